//! skytime-discipline (work in progress).
