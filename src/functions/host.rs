//! The `flagbase` import module: what a function may ask of Flagbase.
//! Every call checks its pointers against the guest's memory, and every
//! capability goes through the invocation's `Host`, which knows the caller
//! and the function's own buckets; there is no call that reaches the
//! network or another function's data.
//!
//! Conventions (documented in the README): strings are (pointer, length)
//! pairs of UTF-8; a call that returns data writes it to (out, out_cap) and
//! returns its length; when the length exceeds `out_cap` nothing is written
//! and the module may call again with a larger buffer. Negative results:
//! -1 not found, -2 refused (a bad name, a bucket that is not the
//! function's), -3 failed, -4 bad pointer or UTF-8.

use wasmtime::{Caller, Linker};

use super::runtime::{HostError, HostState};
use super::wasi::{memory, slice, slice_mut};

const MODULE: &str = "flagbase";
const BAD_ARGUMENT: i32 = -4;

fn text(mem: &[u8], ptr: i32, len: i32) -> Option<String> {
    let bytes = slice(mem, ptr, len)?;
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

/// Writes `data` when it fits and returns its length either way.
fn answer(mem: &mut [u8], data: &[u8], out: i32, cap: i32) -> i32 {
    let Ok(len) = i32::try_from(data.len()) else {
        return HostError::Failed as i32;
    };
    if len <= cap {
        match slice_mut(mem, out, data.len()) {
            Some(dst) => dst.copy_from_slice(data),
            None => return BAD_ARGUMENT,
        }
    }
    len
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "flag_eval",
        |mut c: Caller<'_, HostState>, key: i32, key_len: i32, out: i32, cap: i32| -> i32 {
            let Some(m) = memory(&mut c) else {
                return BAD_ARGUMENT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            let Some(key) = text(mem, key, key_len) else {
                return BAD_ARGUMENT;
            };
            match state.host.flag_eval(&key) {
                Some(json) => answer(mem, &json, out, cap),
                None => HostError::NotFound as i32,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "caller",
        |mut c: Caller<'_, HostState>, out: i32, cap: i32| -> i32 {
            let Some(m) = memory(&mut c) else {
                return BAD_ARGUMENT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            let json = state.host.caller();
            answer(mem, &json, out, cap)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "bucket_get",
        |mut c: Caller<'_, HostState>,
         bucket: i32,
         bucket_len: i32,
         name: i32,
         name_len: i32,
         out: i32,
         cap: i32|
         -> i32 {
            let Some(m) = memory(&mut c) else {
                return BAD_ARGUMENT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            let (Some(bucket), Some(name)) =
                (text(mem, bucket, bucket_len), text(mem, name, name_len))
            else {
                return BAD_ARGUMENT;
            };
            match state.host.bucket_get(&bucket, &name) {
                Ok(data) => answer(mem, &data, out, cap),
                Err(e) => e as i32,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "bucket_put",
        |mut c: Caller<'_, HostState>,
         bucket: i32,
         bucket_len: i32,
         name: i32,
         name_len: i32,
         data: i32,
         data_len: i32|
         -> i32 {
            let Some(m) = memory(&mut c) else {
                return BAD_ARGUMENT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            let (Some(bucket), Some(name), Some(data)) = (
                text(mem, bucket, bucket_len),
                text(mem, name, name_len),
                slice(mem, data, data_len),
            ) else {
                return BAD_ARGUMENT;
            };
            match state.host.bucket_put(&bucket, &name, data) {
                Ok(()) => 0,
                Err(e) => e as i32,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "record_event",
        |mut c: Caller<'_, HostState>,
         flag: i32,
         flag_len: i32,
         kind: i32,
         kind_len: i32,
         value: f64|
         -> i32 {
            let Some(m) = memory(&mut c) else {
                return BAD_ARGUMENT;
            };
            let (mem, state) = m.data_and_store_mut(&mut c);
            let (Some(flag), Some(kind)) = (text(mem, flag, flag_len), text(mem, kind, kind_len))
            else {
                return BAD_ARGUMENT;
            };
            match state.host.record_event(&flag, &kind, value) {
                Ok(()) => 0,
                Err(e) => e as i32,
            }
        },
    )?;
    Ok(())
}
