//! skytime system tests (work in progress).
