//! What this build is: version, git commit and build date.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("FLAGBASE_GIT_COMMIT");
pub const BUILD_DATE: &str = env!("FLAGBASE_BUILD_DATE");

pub fn long() -> String {
    format!("flagbase {VERSION} (commit {COMMIT}, built {BUILD_DATE})")
}
