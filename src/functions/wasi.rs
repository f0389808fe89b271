//! The part of WASI preview1 a CGI-style command needs, implemented on the
//! store's own buffers: stdin is the request body, stdout and stderr are
//! captured (stdout up to the output cap), the environment and `argv[0]`
//! are the invocation's, clocks and randomness are the host's. There are no
//! preopened directories and no sockets, so a module has no file system and
//! no network. Any other preview1 import a toolchain links in is defined to
//! trap if called (`define_unknown_imports_as_traps`), so modules built by
//! Rust, TinyGo, C or Zig link unchanged.
//!
//! wasmtime-wasi would bring the whole component model with it; these
//! dozen calls are all a command invoked CGI-style uses.

use wasmtime::{Caller, Extern, Linker, Memory};

use super::runtime::{Exit, HostState};

const MODULE: &str = "wasi_snapshot_preview1";

// errno values of preview1.
pub const SUCCESS: i32 = 0;
pub const EBADF: i32 = 8;
pub const EFAULT: i32 = 21;
pub const EINVAL: i32 = 28;
pub const ENOSYS: i32 = 52;
pub const ESPIPE: i32 = 70;

/// The store's exported linear memory, if it has one.
pub fn memory(caller: &mut Caller<'_, HostState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Bounds-checked view of guest memory `[ptr, ptr + len)`.
pub fn slice(mem: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let start = u32::try_from(ptr).ok()? as usize;
    let len = u32::try_from(len).ok()? as usize;
    mem.get(start..start.checked_add(len)?)
}

pub fn slice_mut(mem: &mut [u8], ptr: i32, len: usize) -> Option<&mut [u8]> {
    let start = u32::try_from(ptr).ok()? as usize;
    mem.get_mut(start..start.checked_add(len)?)
}

fn read_u32(mem: &[u8], at: usize) -> Option<u32> {
    let bytes = mem.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn write_bytes(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> bool {
    match slice_mut(mem, ptr, bytes.len()) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// The (ptr, len) pairs of an iovec array.
fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Option<Vec<(usize, usize)>> {
    let base = u32::try_from(iovs).ok()? as usize;
    let count = u32::try_from(count).ok()? as usize;
    if count > 1024 {
        return None;
    }
    (0..count)
        .map(|i| {
            let at = base.checked_add(i * 8)?;
            Some((read_u32(mem, at)? as usize, read_u32(mem, at + 4)? as usize))
        })
        .collect()
}

/// `*_sizes_get`: the count and the total size of NUL-terminated strings.
fn sizes(mem: &mut [u8], items: &[String], count_ptr: i32, size_ptr: i32) -> i32 {
    let size: usize = items.iter().map(|s| s.len() + 1).sum();
    if write_bytes(mem, count_ptr, &(items.len() as u32).to_le_bytes())
        && write_bytes(mem, size_ptr, &(size as u32).to_le_bytes())
    {
        SUCCESS
    } else {
        EFAULT
    }
}

/// `*_get`: pointers into `buf`, then the strings with their NULs.
fn strings(mem: &mut [u8], items: &[String], ptrs: i32, buf: i32) -> i32 {
    let mut at = buf as u32;
    for (i, item) in items.iter().enumerate() {
        let slot = ptrs.wrapping_add((i * 4) as i32);
        if !write_bytes(mem, slot, &at.to_le_bytes()) {
            return EFAULT;
        }
        let mut bytes = item.as_bytes().to_vec();
        bytes.push(0);
        if !write_bytes(mem, at as i32, &bytes) {
            return EFAULT;
        }
        at = at.wrapping_add(bytes.len() as u32);
    }
    SUCCESS
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut c: Caller<'_, HostState>, count: i32, size: i32| -> i32 {
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            sizes(mem, &state.args, count, size)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_get",
        |mut c: Caller<'_, HostState>, ptrs: i32, buf: i32| -> i32 {
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            strings(mem, &state.args, ptrs, buf)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut c: Caller<'_, HostState>, count: i32, size: i32| -> i32 {
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            sizes(mem, &state.env, count, size)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        |mut c: Caller<'_, HostState>, ptrs: i32, buf: i32| -> i32 {
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            strings(mem, &state.env, ptrs, buf)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Caller<'_, HostState>, fd: i32, iovs: i32, count: i32, nread: i32| -> i32 {
            if fd != 0 {
                return EBADF;
            }
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            let Some(vecs) = iovecs(mem, iovs, count) else {
                return EFAULT;
            };
            let mut total = 0usize;
            for (ptr, len) in vecs {
                let rest = &state.stdin[state.stdin_pos..];
                let n = rest.len().min(len);
                let Some(dst) = mem.get_mut(ptr..ptr.saturating_add(n)) else {
                    return EFAULT;
                };
                dst.copy_from_slice(&rest[..n]);
                state.stdin_pos += n;
                total += n;
                if n < len {
                    break;
                }
            }
            if write_bytes(mem, nread, &(total as u32).to_le_bytes()) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         count: i32,
         nwritten: i32|
         -> wasmtime::Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(EBADF);
            }
            let Some(m) = memory(&mut c) else {
                return Ok(EFAULT);
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            let Some(vecs) = iovecs(mem, iovs, count) else {
                return Ok(EFAULT);
            };
            let mut total = 0usize;
            for (ptr, len) in vecs {
                let Some(src) = mem.get(ptr..ptr.saturating_add(len)) else {
                    return Ok(EFAULT);
                };
                if fd == 1 {
                    if state.stdout.len() + src.len() > state.max_output {
                        // Cut, not truncated: a half response must not be
                        // served as if it were whole.
                        state.output_exceeded = true;
                        return Err(wasmtime::Error::new(super::runtime::OutputTooLarge));
                    }
                    state.stdout.extend_from_slice(src);
                } else {
                    state.write_stderr(src);
                }
                total += len;
            }
            Ok(
                if write_bytes(mem, nwritten, &(total as u32).to_le_bytes()) {
                    SUCCESS
                } else {
                    EFAULT
                },
            )
        },
    )?;
    linker.func_wrap(MODULE, "fd_close", |fd: i32| -> i32 {
        if (0..=2).contains(&fd) {
            SUCCESS
        } else {
            EBADF
        }
    })?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Caller<'_, HostState>, fd: i32, buf: i32| -> i32 {
            if !(0..=2).contains(&fd) {
                return EBADF;
            }
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            let mem = m.data_mut(&mut c);
            // fdstat: filetype u8 (2 = character device), flags u16,
            // rights_base u64, rights_inheriting u64.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // fd_read / fd_write
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            if write_bytes(mem, buf, &stat) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    // No preopened directories: EBADF ends a libc's preopen scan at fd 3.
    linker.func_wrap(MODULE, "fd_prestat_get", |_fd: i32, _buf: i32| -> i32 {
        EBADF
    })?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_fd: i32, _buf: i32, _len: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |fd: i32, _offset: i64, _whence: i32, _new: i32| -> i32 {
            if (0..=2).contains(&fd) {
                ESPIPE
            } else {
                EBADF
            }
        },
    )?;
    linker.func_wrap(MODULE, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Exit(code)))
    })?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller<'_, HostState>, id: i32, _precision: i64, out: i32| -> i32 {
            let nanos: u64 = match id {
                0 => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0),
                1 => c.data().started.elapsed().as_nanos() as u64,
                _ => return EINVAL,
            };
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            if write_bytes(m.data_mut(&mut c), out, &nanos.to_le_bytes()) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Caller<'_, HostState>, _id: i32, out: i32| -> i32 {
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            if write_bytes(m.data_mut(&mut c), out, &1_000u64.to_le_bytes()) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller<'_, HostState>, buf: i32, len: i32| -> i32 {
            use rand::RngCore;
            let Some(m) = memory(&mut c) else {
                return EFAULT;
            };
            let Ok(len) = usize::try_from(len) else {
                return EINVAL;
            };
            match slice_mut(m.data_mut(&mut c), buf, len) {
                Some(dst) => {
                    rand::rng().fill_bytes(dst);
                    SUCCESS
                }
                None => EFAULT,
            }
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", || -> i32 { SUCCESS })?;
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |_in: i32, _out: i32, _n: i32, _done: i32| -> i32 { ENOSYS },
    )?;
    Ok(())
}
