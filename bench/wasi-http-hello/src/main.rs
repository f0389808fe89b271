//! Writes `hello.component.wasm`: `hello.wat` (a core module implementing
//! `wasi:http/incoming-handler` by hand, canonical ABI and all) wrapped as a
//! component of the `wasi:http/proxy` world, using the WIT files that ship
//! with the `wasmtime-wasi-http` crate wasmtime 48 uses.
//!
//! Usage: `cargo run --release -- <wit dir> <out.wasm>`

use anyhow::{Context, Result};
use wit_component::{embed_component_metadata, ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let wit_dir = args.next().context("usage: wasi-http-hello <wit dir> <out.wasm>")?;
    let out = args.next().context("usage: wasi-http-hello <wit dir> <out.wasm>")?;
    let mut resolve = Resolve::default();
    resolve.push_dir(&wit_dir).with_context(|| format!("reading WIT from {wit_dir}"))?;
    let proxy = resolve
        .packages
        .iter()
        .find(|(_, p)| p.name.namespace == "wasi" && p.name.name == "http")
        .map(|(id, _)| id)
        .context("no wasi:http package in the WIT directory")?;
    let world = resolve.select_world(&[proxy], Some("proxy"))?;
    let mut module = wat::parse_str(include_str!("../hello.wat"))?;
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    let component = ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()?;
    std::fs::write(&out, component).with_context(|| format!("writing {out}"))?;
    eprintln!("wrote {out}");
    Ok(())
}
