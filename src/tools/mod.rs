//! Tools around the pipeline that are not stages of it: [`generate`] writes a synthetic Sage
//! company (and its Procore sandbox seed) for benchmarks and demos (`jcsync generate`).

pub mod generate;
