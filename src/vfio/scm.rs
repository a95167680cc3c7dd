//! `recvmsg` with a bounded number of fds (SCM_RIGHTS).
//!
//! `vmm_sys_util`'s `recv_with_fds` treats fds beyond the caller's room as an error (ENOBUFS)
//! and then loses the bytes it read with them, so a server using it must offer room for the
//! kernel's maximum (`SCM_MAX_FD`, 253) on every read to stay in sync with a client that sends
//! too many. That lets one client make the process hold 253 fds per read. Here the room is
//! small and a truncated control message is reported, not an error: the kernel closes the fds
//! that did not fit, the bytes are kept, and the caller refuses the message.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// What one `recvmsg` brought.
pub(crate) struct Received {
    /// Bytes read into the buffer (0: end of stream).
    pub len: usize,
    pub fds: Vec<OwnedFd>,
    /// More fds came than there was room for; the kernel closed the rest.
    pub truncated: bool,
}

/// The most fds [`recv`] makes room for.
pub(crate) const MAX_ROOM: usize = 64;

/// `recvmsg` into `buf` with room for `room` fds (at most [`MAX_ROOM`]; close-on-exec; the
/// control buffer's alignment may let one more in). `dontwait`: fail with `WouldBlock` rather
/// than wait for data.
pub(crate) fn recv(
    sock: &UnixStream,
    buf: &mut [u8],
    room: usize,
    dontwait: bool,
) -> io::Result<Received> {
    let room = room.clamp(1, MAX_ROOM);
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE((room * std::mem::size_of::<libc::c_int>()) as u32) };
    // u64 elements: aligned for cmsghdr; on the stack (a header's room is small), 16 bytes of
    // cmsghdr and the fds rounded up.
    let mut storage = [0u64; 2 + MAX_ROOM.div_ceil(2) + 1];
    let control = &mut storage[..(space as usize).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; the fields set point at live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() * 8;
    let flags = libc::MSG_CMSG_CLOEXEC | if dontwait { libc::MSG_DONTWAIT } else { 0 };
    // SAFETY: msg describes buffers that outlive the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control buffer the kernel filled, with the libc macros, within
    // msg_controllen; each SCM_RIGHTS payload is an array of fds now installed in our table.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n as usize,
        fds,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;

    #[test]
    fn fds_beyond_the_room_are_reported_and_the_bytes_kept() {
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<std::fs::File> = (0..5)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let raw: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
        a.send_with_fds(&[&b"abcd"[..]], &raw[..2]).unwrap();
        a.send_with_fds(&[&b"efgh"[..]], &raw).unwrap();
        let mut buf = [0u8; 4];
        let r = recv(&b, &mut buf, 3, false).unwrap();
        assert_eq!(
            (r.len, r.fds.len(), r.truncated, &buf),
            (4, 2, false, b"abcd")
        );
        let r = recv(&b, &mut buf, 3, false).unwrap();
        assert_eq!((r.len, r.truncated, &buf), (4, true, b"efgh"));
        // CMSG_SPACE rounds the room up to 8 bytes: a fourth fd fits, the fifth does not.
        assert!(r.fds.len() < 5);
        drop(a);
        let r = recv(&b, &mut buf, 3, false).unwrap();
        assert_eq!((r.len, r.fds.len()), (0, 0));
    }
}
