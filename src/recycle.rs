//! Batches go round: a flushed batch is emptied, keeping the capacity of its buffers, and
//! handed back to the poll loop that fills the next one.
//!
//! Why: one batch holds tens of MiB of encoded rows and unit records. Allocated afresh for
//! every batch, each byte is memory the kernel must fault in and zero again (measured: a
//! quarter of the ingester's CPU in the kernel's `clear_page`), and vectors that grow by
//! doubling copy themselves on the way. A recycled batch writes into memory it already
//! touched. The pool is small and bounded (a stage has at most `batches_in_flight_max`
//! batches queued, one being flushed and one filling), so it never holds more than the
//! stage's batches did anyway.

use bytes::Bytes;
use std::sync::Mutex;

/// Something a [`Pool`] can hand out again: `clear` empties it but keeps its capacity.
pub trait Recycle {
    fn clear(&mut self);
}

/// A bounded stack of emptied items.
#[derive(Debug)]
pub struct Pool<T> {
    free: Mutex<Vec<T>>,
    held_max: usize,
}

impl<T: Recycle> Pool<T> {
    /// A pool that keeps at most `held_max` items; more given back are dropped.
    pub fn new(held_max: usize) -> Pool<T> {
        Pool {
            free: Mutex::new(Vec::with_capacity(held_max)),
            held_max,
        }
    }

    /// An emptied item, if one was given back.
    pub fn take(&self) -> Option<T> {
        self.free.lock().expect("recycling pool poisoned").pop()
    }

    /// Empties `item` and keeps it for [`Pool::take`], unless the pool is full.
    pub fn give(&self, mut item: T) {
        item.clear();
        let mut free = self.free.lock().expect("recycling pool poisoned");
        if free.len() < self.held_max {
            free.push(item);
        }
    }
}

/// The buffer behind `bytes`, emptied, if nothing else still holds a handle to it (the
/// HTTP client drops its handles once the request is answered; if one lingers, the caller
/// just allocates afresh next time).
pub fn reclaim(bytes: Bytes) -> Option<Vec<u8>> {
    let mut buffer = Vec::from(bytes.try_into_mut().ok()?);
    buffer.clear();
    Some(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Recycle for Vec<u8> {
        fn clear(&mut self) {
            Vec::clear(self);
        }
    }

    #[test]
    fn proves_items_come_back_empty_with_their_capacity_and_the_pool_stays_bounded() {
        let pool: Pool<Vec<u8>> = Pool::new(1);
        let mut first = Vec::with_capacity(4096);
        first.extend_from_slice(b"rows");
        pool.give(first);
        pool.give(vec![1, 2, 3]);
        let back = pool.take().expect("one item kept");
        assert!(back.is_empty());
        assert!(back.capacity() >= 4096);
        assert!(pool.take().is_none(), "the second item was beyond held_max");
    }

    #[test]
    fn proves_a_buffer_is_reclaimed_only_when_no_other_handle_holds_it() {
        let mut buffer = Vec::with_capacity(1 << 20);
        buffer.extend_from_slice(&[7; 1000]);
        let pointer = buffer.as_ptr();
        let bytes = Bytes::from(buffer);
        let copy = bytes.clone();
        assert!(reclaim(bytes).is_none(), "a second handle still reads it");
        let back = reclaim(copy).expect("the last handle gives the buffer back");
        assert_eq!(back.as_ptr(), pointer, "the same allocation, not a copy");
        assert!(back.is_empty() && back.capacity() >= 1 << 20);
    }
}
