//! The stream surface shared by `tcp::Conn` and `unix::Conn`, written once.
//!
//! Both types hold a `fd: crate::poll::Fd`; the macro generates the I/O, close, half-close
//! and deadline methods plus the `std::io` and `AsFd` impls, so the two cannot drift.

macro_rules! stream_io {
    ($ty:ident) => {
        impl $ty {
            /// One read: returns as soon as at least one byte is available (short reads are
            /// normal); `Ok(0)` means EOF (or an empty `buf`).
            ///
            /// # Errors
            /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded) once the read
            /// deadline has passed (even if data is ready), [`Error::Closed`](crate::Error::Closed)
            /// if the socket is or gets closed, `Sys { op: "read" }` for OS errors.
            pub fn read(&self, buf: &mut [u8]) -> crate::Result<usize> {
                self.fd.read(buf)
            }

            /// Reads until `buf` is full or EOF (Julia's `readbytes!(…; all=true)`); returns
            /// how many bytes were read. A short count means EOF.
            ///
            /// # Errors
            /// As [`read`](Self::read). On an error the bytes already read are in `buf`.
            pub fn read_full(&self, buf: &mut [u8]) -> crate::Result<usize> {
                let mut done = 0;
                while done < buf.len() {
                    match self.fd.read(&mut buf[done..])? {
                        0 => break,
                        n => done += n,
                    }
                }
                Ok(done)
            }

            /// Waits for at least one byte, then returns everything ready at that moment
            /// (Julia's `readavailable`). Empty at EOF.
            ///
            /// # Errors
            /// As [`read`](Self::read).
            pub fn read_available(&self) -> crate::Result<Vec<u8>> {
                let mut buf = vec![0u8; 4096];
                let n = self.fd.read(&mut buf)?;
                // What was queued at this moment, not what a fast sender adds meanwhile:
                // the call must end, and its memory stay bounded.
                let more = if n < buf.len() {
                    0
                } else {
                    self.fd.readable_now()?
                };
                buf.resize(n + more, 0);
                let mut got = n;
                while got < buf.len() {
                    match self.fd.try_read(&mut buf[got..])? {
                        Some(m) if m > 0 => got += m,
                        _ => break,
                    }
                }
                buf.truncate(got);
                Ok(buf)
            }

            /// Closes so the peer reads EOF, not a reset: half-closes, drops whatever input
            /// is queued (closing with unread input makes the kernel send RST), closes.
            pub(crate) fn close_gracefully(&self) {
                let _ = self.close_write();
                let mut sink = [0u8; 4096];
                while let Ok(Some(n)) = self.fd.try_read(&mut sink) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = self.close();
            }

            /// Bytes that can be read now without waiting (`FIONREAD`).
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed), `Sys { op: "ioctl(FIONREAD)" }`.
            pub fn bytes_available(&self) -> crate::Result<usize> {
                self.fd.readable_now()
            }

            /// True when the peer has closed its write side and every byte has been read;
            /// blocks (honouring the read deadline) until that or a byte is known.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed) on a closed socket (also when closed
            /// while blocked), [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded).
            pub fn eof(&self) -> crate::Result<bool> {
                self.fd.eof()
            }

            /// Writes all of `buf` (waiting while the send buffer is full) and returns its
            /// length. If a deadline, `close` or an OS error cuts the write after some bytes
            /// went out, returns `Ok(sent)`; the next call reports the error. Uses
            /// `MSG_NOSIGNAL`: a reset peer is an error, never a SIGPIPE.
            ///
            /// # Errors
            /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded),
            /// [`Error::Closed`](crate::Error::Closed), `Sys { op: "write" }` (e.g. `EPIPE`,
            /// `ECONNRESET`) when nothing was written.
            pub fn write(&self, buf: &[u8]) -> crate::Result<usize> {
                self.fd.write(buf)
            }

            /// One gathered write (`sendmsg(2)`, the `writev` of this crate); returns the
            /// bytes the kernel took, which may be fewer than the total.
            ///
            /// # Errors
            /// As [`write`](Self::write).
            pub fn write_vectored(&self, bufs: &[std::io::IoSlice<'_>]) -> crate::Result<usize> {
                self.fd.write_vectored(bufs)
            }

            /// Closes the socket: blocked calls in other threads fail with
            /// [`Error::Closed`](crate::Error::Closed), and the descriptor is closed once
            /// they have returned. Idempotent; dropping the value also closes.
            ///
            /// # Errors
            /// None today; the `Result` keeps room for platforms whose close can fail.
            pub fn close(&self) -> crate::Result<()> {
                let _ = self.fd.close();
                Ok(())
            }

            /// False once [`close`](Self::close) has started.
            pub fn is_open(&self) -> bool {
                self.fd.is_open()
            }

            /// Shuts the read side (`shutdown(SHUT_RD)`): later reads return EOF.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed), `Sys { op: "shutdown" }`.
            pub fn close_read(&self) -> crate::Result<()> {
                self.fd.control("shutdown", |fd| {
                    crate::sys::sock(&fd).shutdown(std::net::Shutdown::Read)
                })
            }

            /// Shuts the write side (`shutdown(SHUT_WR)`, a half-close): the peer reads EOF
            /// while this side can still read.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed), `Sys { op: "shutdown" }`.
            pub fn close_write(&self) -> crate::Result<()> {
                self.fd.control("shutdown", |fd| {
                    crate::sys::sock(&fd).shutdown(std::net::Shutdown::Write)
                })
            }

            /// Sets the read and write deadlines (absolute; `None` clears). A deadline in the
            /// past fails the next call at once, even if it could proceed, and stays until
            /// reset; changing it while a call is blocked takes effect for that call.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed) on a closed socket.
            pub fn set_deadline(&self, at: Option<std::time::Instant>) -> crate::Result<()> {
                self.fd.set_deadlines(at)
            }

            /// Sets the read deadline (reads, `eof`, `read_available`). See
            /// [`set_deadline`](Self::set_deadline).
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed) on a closed socket.
            pub fn set_read_deadline(&self, at: Option<std::time::Instant>) -> crate::Result<()> {
                self.fd.set_deadline(crate::poll::Dir::Read, at)
            }

            /// Sets the write deadline. See [`set_deadline`](Self::set_deadline).
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed) on a closed socket.
            pub fn set_write_deadline(&self, at: Option<std::time::Instant>) -> crate::Result<()> {
                self.fd.set_deadline(crate::poll::Dir::Write, at)
            }
        }

        impl std::io::Read for &$ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                Ok($ty::read(self, buf)?)
            }
        }

        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                Ok($ty::read(self, buf)?)
            }
        }

        impl std::io::Write for &$ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                Ok($ty::write(self, buf)?)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                Ok($ty::write_vectored(self, bufs)?)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                Ok($ty::write(self, buf)?)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                Ok($ty::write_vectored(self, bufs)?)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        fd_traits!($ty);
    };
}

/// `AsFd`/`AsRawFd` for a type holding `fd: crate::poll::Fd`.
macro_rules! fd_traits {
    ($ty:ident) => {
        /// I/O safe: while the value is open this is its socket; after `close` the number
        /// stays reserved for the value (it names a dead placeholder socket on which every
        /// I/O call fails) until the value is dropped, so it can never name a file or
        /// socket opened later, even by another thread.
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.fd.raw()
            }
        }
    };
}
