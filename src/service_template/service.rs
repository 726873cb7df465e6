//! The rules of the service routes (spec/environments.md §4).
