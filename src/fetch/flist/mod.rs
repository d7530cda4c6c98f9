//! Flists: the hub's boot chain (`hub`, sans-IO) and its driver (`chain`).
pub mod chain;
pub mod hub;
