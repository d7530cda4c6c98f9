//! Fetching boot artifacts from the hub: HTTP/1.1 over TLS, verified and resumable downloads.
pub mod beneath;
pub mod download;
pub mod flist;
pub mod http;
pub mod hubs;
pub mod install;
pub mod manifest;
pub mod signature;
pub mod stage;
pub mod tls;
