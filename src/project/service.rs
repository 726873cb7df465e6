//! The rules of the project routes (spec/environments.md §2).
