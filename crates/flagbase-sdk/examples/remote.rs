//! Remote evaluation: one request per call.
//!
//! ```sh
//! FLAGBASE_URL=http://localhost:8080 FLAGBASE_TOKEN=fbk_... \
//!     cargo run -p flagbase-sdk --example remote -- new-checkout-ui user-42
//! ```

use flagbase_sdk::{Client, Context};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("FLAGBASE_URL").unwrap_or_else(|_| "http://localhost:8080".into());
    let token = std::env::var("FLAGBASE_TOKEN").map_err(|_| "set FLAGBASE_TOKEN (fbk_...)")?;
    let mut args = std::env::args().skip(1);
    let key = args.next().unwrap_or_else(|| "new-checkout-ui".into());
    let user = args.next().unwrap_or_else(|| "user-42".into());

    let client = Client::new(&url, &token)?;
    let eval = client
        .evaluate(&key, &Context::with_targeting_key(user).with("plan", "pro"))
        .await?;
    println!("{}", serde_json::to_string_pretty(&eval)?);
    Ok(())
}
