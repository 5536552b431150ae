//! cimc: the compiler driver library.
