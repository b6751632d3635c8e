//! Packet buffers mapped straight from the kernel (anonymous mmap): pages become resident only
//! when a packet touches them, so a link that only ever moves MTU-sized packets holds a few
//! KiB of its 64 KiB buffers, whatever the allocator's thresholds are.

use std::ops::{Deref, DerefMut};

pub(crate) struct PacketBuffer {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and freed once, in Drop.
unsafe impl Send for PacketBuffer {}

impl PacketBuffer {
    pub(crate) fn new(len: usize) -> std::io::Result<Self> {
        // SAFETY: a private anonymous mapping with no address hint.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Deref for PacketBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to len readable bytes (zero-filled on first touch) until Drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for PacketBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PacketBuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new().
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::PacketBuffer;

    #[test]
    fn reads_back_what_was_written() {
        let mut b = PacketBuffer::new(65536).unwrap();
        assert_eq!(b.len(), 65536);
        assert_eq!(b[65535], 0);
        b[100] = 7;
        assert_eq!(b[100], 7);
    }
}
