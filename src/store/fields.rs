//! Reading a stored record's fixed-width fields front to back: the one
//! reader of the binary records the sled backend's run manifests and the
//! vault's key blocks are made of.
//!
//! Invariant: a read past the end answers `None` and consumes nothing, so
//! a truncated record is refused, never read short; integers are
//! big-endian, as every record writes them.

/// The bytes of a record not read yet.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl<'a> Fields<'a> {
    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    /// The next `N` bytes, as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// Whether every byte was read (a record with a tail is refused).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Fields;

    #[test]
    fn fields_read_big_endian_and_refuse_a_short_record() {
        let mut r = Fields(&[1, 0, 2, 0, 0, 0, 3, 9]);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(2));
        assert_eq!(r.u32(), Some(3));
        assert_eq!(r.u64(), None, "a short read");
        assert_eq!(r.take(1), Some(&[9][..]), "a short read consumes nothing");
        assert!(r.is_empty());
    }
}
