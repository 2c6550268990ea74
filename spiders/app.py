"""A shop that is a JavaScript app: its HTML has no books, only scripts that load them. Each
page is rendered in a headless browser; the listing's "More books" button is clicked through
`response.page` until every book is shown.

    pip install -e ".[browser]"                         # and a Chromium (apt install chromium)
    python -m crawler demo --serve --port 8000          # in another terminal
    python -m crawler run spiders/app.py -o books.jsonl

(Rendering is the slow way: this app loads its books from /app/api/*.json, which JsonRequests
would fetch in a fraction of the time. See "When to render" in the README.)
"""

from crawler import Spider


class App(Spider):
    name = "app"
    start_urls = ["http://127.0.0.1:8000/app/"]
    render = True
    # a page is ready once its script has filled it in
    custom_settings = {"render_wait": "body[data-ready]"}

    async def parse(self, response):
        page = response.page
        more = page.locator("#more")
        while await more.is_visible():
            shown = await page.locator("a.book").count()
            await more.click()
            await page.wait_for_function(f"document.querySelectorAll('a.book').length > {shown}")
        await response.update()  # the DOM as it is now, every book listed
        for link in response.css("a.book"):
            yield response.follow(link, callback=self.parse_book)

    async def parse_book(self, response):
        yield {
            "url": response.url,
            "title": response.css_first("h1").text(),
            "price": response.css_first("p.price_color").text(),
        }
