//! Local evaluation: definitions streamed from Flagbase, every check in
//! process. Prints each change as it arrives and re-evaluates the flag;
//! saves a bootstrap file so the next start works offline.
//!
//! ```sh
//! FLAGBASE_URL=http://localhost:8080 FLAGBASE_TOKEN=fbk_... \
//!     cargo run -p flagbase-sdk --example local -- new-checkout-ui
//! ```

use std::time::Duration;

use flagbase_sdk::{Context, LocalClient, LocalOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("FLAGBASE_URL").unwrap_or_else(|_| "http://localhost:8080".into());
    let token =
        std::env::var("FLAGBASE_TOKEN").map_err(|_| "set FLAGBASE_TOKEN (a server token)")?;
    let key = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "new-checkout-ui".into());
    let bootstrap = std::env::temp_dir().join("flagbase-bootstrap.json");

    let flags = LocalClient::init(LocalOptions::new(url, token).bootstrap(&bootstrap)).await?;
    println!("{} flags, state {:?}", flags.keys().len(), flags.state());
    flags.on_change(|c| println!("change #{}: {} {:?}", c.seq, c.key, c.kind));

    let ctx = Context::with_targeting_key("user-42").with("plan", "pro");
    for _ in 0..30 {
        println!("{key} = {} ({:?})", flags.value(&key, &ctx), flags.state());
        flags.save_bootstrap(&bootstrap).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
