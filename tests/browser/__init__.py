"""Browser tests of the progress view (Playwright, headless Chromium)."""
