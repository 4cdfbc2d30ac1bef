//! One blob's place among the transfers in flight ([`super::CopyOptions::jobs`]). A transfer
//! holds its place while it moves bytes, and gives it up as soon as its last byte has been
//! handed to the target: what remains is the registry committing the upload, which for a large
//! blob takes long (distribution's filesystem driver syncs the file to disk before it answers
//! the final `PUT`; ECR's `CompleteLayerUpload` assembles the layer's parts), and the next
//! blob's bytes can flow meanwhile instead of leaving the machine and the link idle. A retry
//! takes a place again before it sends anything.

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

pub(super) struct TransferSlot<'a> {
    places: &'a Semaphore,
    held: Mutex<Option<SemaphorePermit<'a>>>,
}

impl<'a> TransferSlot<'a> {
    /// A slot for one blob's transfers, holding no place yet.
    pub(super) fn new(places: &'a Semaphore) -> TransferSlot<'a> {
        TransferSlot {
            places,
            held: Mutex::new(None),
        }
    }

    /// Waits for a place among the transfers in flight, unless this slot holds one.
    pub(super) async fn hold(&self) {
        if self.lock().is_some() {
            return;
        }
        let permit = self
            .places
            .acquire()
            .await
            .expect("the transfer semaphore is never closed");
        self.lock().get_or_insert(permit);
    }

    /// Gives the place up (the transfer's bytes are all sent); a later [`TransferSlot::hold`]
    /// waits for one again.
    pub(super) fn release(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SemaphorePermit<'a>>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_released_place_goes_to_the_next_transfer_and_a_retry_waits_for_one() {
        let places = Semaphore::new(1);
        let first = TransferSlot::new(&places);
        first.hold().await;
        first.hold().await; // already held: takes no second place
        assert_eq!(places.available_permits(), 0);

        let second = TransferSlot::new(&places);
        first.release();
        second.hold().await;
        assert_eq!(places.available_permits(), 0);

        // The first transfer is retried: it must wait until the second gives its place up.
        let retry = first.hold();
        tokio::pin!(retry);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut retry)
                .await
                .is_err()
        );
        drop(second);
        retry.await;
        assert_eq!(places.available_permits(), 0);
        first.release();
        assert_eq!(places.available_permits(), 1);
    }
}
