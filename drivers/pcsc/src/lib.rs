//! PC/SC encoder transport: the `pcsc` crate on a dedicated thread per reader.
