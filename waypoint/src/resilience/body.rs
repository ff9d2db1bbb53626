//! `maxRequestBodyBytes`: a request announcing a longer body
//! (`content-length`) is refused before it goes anywhere (413); a streamed
//! body is passed on until it crosses the limit, and then ends in an
//! error, which aborts the request upstream (HTTP/1.1: the connection is
//! closed; HTTP/2: the stream is reset), and the client gets 413.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::response::BoxError;

/// A request body crossed its limit.
#[derive(Debug, thiserror::Error)]
#[error("request body over {0} bytes")]
pub struct TooLarge(pub u64);

/// Whether a body that says `hint` of its size is over `limit` already.
pub fn announced_over(hint: &SizeHint, limit: u64) -> bool {
    hint.lower() > limit
}

/// A body passed on up to `limit` bytes; beyond, an error, and `tripped`
/// set (how the caller tells this abort from the backend's).
pub struct Limited<B> {
    inner: B,
    left: u64,
    limit: u64,
    tripped: Arc<AtomicBool>,
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64) -> (Self, Arc<AtomicBool>) {
        let tripped = Arc::new(AtomicBool::new(false));
        (
            Limited {
                inner,
                left: limit,
                limit,
                tripped: tripped.clone(),
            },
            tripped,
        )
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.tripped.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(TooLarge(self.limit).into())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.left {
                        self.tripped.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(TooLarge(self.limit).into())));
                    }
                    self.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(
        sizes: &[usize],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = sizes
            .iter()
            .map(|n| Ok(Frame::data(Bytes::from(vec![b'x'; *n]))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    #[test]
    fn a_body_within_the_limit_passes_whole() {
        let (b, tripped) = Limited::new(chunks(&[4, 4, 2]), 10);
        let got = futures::executor::block_on(b.collect()).unwrap().to_bytes();
        assert_eq!(got.len(), 10);
        assert!(!tripped.load(Ordering::Acquire));
    }

    #[test]
    fn a_body_crossing_the_limit_ends_in_an_error_after_what_fit() {
        let (mut b, tripped) = Limited::new(chunks(&[4, 4, 4, 4]), 10);
        let mut passed = 0;
        let err = futures::executor::block_on(async {
            loop {
                match b.frame().await {
                    Some(Ok(f)) => passed += f.into_data().unwrap().len(),
                    Some(Err(e)) => return e,
                    None => panic!("ended without an error"),
                }
            }
        });
        assert_eq!(passed, 8, "no byte beyond the limit is passed on");
        assert_eq!(err.to_string(), "request body over 10 bytes");
        assert!(tripped.load(Ordering::Acquire));
        assert!(announced_over(&SizeHint::with_exact(11), 10));
        assert!(!announced_over(&SizeHint::with_exact(10), 10));
        assert!(
            !announced_over(&SizeHint::default(), 10),
            "unknown: streamed"
        );
    }
}
