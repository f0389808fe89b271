//! The web console's platform pages (gateway, functions, detector, tokens,
//! users) in headless Chromium: tests/ui/platform.test.mjs against this
//! freshly built binary, through the runner of `console_ui.rs`.

#[test]
fn console_ui_platform_pages_work_in_a_browser() {
    crate::console_ui::run_ui_suite("platform.test.mjs");
}
