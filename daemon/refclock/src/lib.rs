//! skytime-refclock (work in progress).
