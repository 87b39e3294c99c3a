//! The FUSE wire protocol, as pure code: bytes in (`decode`), bytes out (`encode`), the
//! protocol's numbers (`abi`) and the attributes a node shows (`attr`). No I/O and no
//! `unsafe`: the transports that move these bytes live in `crate::fuse`.

pub mod abi;
pub mod attr;
pub mod decode;
pub mod encode;

pub use attr::{FileAttr, FileType};
pub use decode::{DecodeError, Header, Op, decode};
pub use encode::{InitOut, Out};

#[cfg(test)]
mod tests;
