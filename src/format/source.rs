//! Where tensor bytes come from during upload. Natively they are borrowed from the file's memory
//! map ([`MappedSource`]); in the browser they are read from the user's `Blob` one range at a time
//! (the web crate's source), so the weights never live in wasm memory as a whole. The upload
//! (`GpuModel::upload_from`) is one async path for both.

use std::borrow::Cow;
use std::future::Future;
use std::ops::Range;

use super::ModelFile;
use crate::error::{Error, Result};

/// A reader of tensor bytes by storage index and byte range (see `TensorEntry::storage`,
/// `ModelFile::tensor_range`). The upload asks for ranges of at most one upload chunk and drops
/// each before asking for the next.
pub trait WeightSource {
    /// Bytes `range` of storage `storage`. The future may resolve later (a browser read) or at
    /// once (a memory map).
    fn read(
        &mut self,
        storage: usize,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Cow<'_, [u8]>>>;

    /// A hint that bytes `range` of `storage` are uploaded and will not be read again.
    fn release(&mut self, storage: usize, range: Range<u64>) {
        let _ = (storage, range);
    }
}

/// Reads from the [`ModelFile`]'s own memory (maps or owned bytes); releases uploaded pages.
pub struct MappedSource<'a>(pub(super) &'a ModelFile);

impl WeightSource for MappedSource<'_> {
    fn read(
        &mut self,
        storage: usize,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Cow<'_, [u8]>>> {
        let file = self.0;
        let r = file
            .storage_bytes(storage, range.clone())
            .map(Cow::Borrowed)
            .map_err(|msg| {
                Error::format(
                    file.path.display(),
                    format!("bytes {}..{}: {msg}", range.start, range.end),
                )
            });
        std::future::ready(r)
    }

    fn release(&mut self, storage: usize, range: Range<u64>) {
        if let Some(st) = self.0.storages.get(storage) {
            st.release(range);
        }
    }
}
