//! skytime-nts (work in progress).
