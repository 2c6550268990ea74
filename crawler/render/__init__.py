"""Browser rendering (Playwright, an extra): pages rendered in Chromium, their subrequests
through the crawl's own fetcher and politeness."""
