//! cimc backends.
