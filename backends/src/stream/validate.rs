//! Static validation of a stream (see [`super::Stream::validate`]).

use super::Stream;
use crate::error::Result;

pub(super) fn validate(_s: &Stream) -> Result<()> {
    Ok(())
}
