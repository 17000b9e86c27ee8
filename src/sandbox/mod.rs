//! A local emulator of the Procore API (issue 3).
