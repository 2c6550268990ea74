"""Structured items from books.toscrape.com: follow the catalogue's pages, parse each book.

    python -m crawler run spiders/books.py -o books.csv

`python -m crawler demo` serves a local shop with the same markup; crawl it with
`-a start_urls=http://127.0.0.1:PORT/`.
"""

from crawler import Spider

RATINGS = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}


class Books(Spider):
    name = "books"
    start_urls = ["https://books.toscrape.com/"]
    custom_settings = {"per_domain_concurrency": 8}

    async def parse(self, response):
        """A catalogue page: every book on it, then the next page."""
        for link in response.css("article.product_pod h3 a"):
            yield response.follow(link, callback=self.parse_book)
        next_page = response.css_first("li.next a")
        if next_page is not None:
            yield response.follow(next_page)

    async def parse_book(self, response):
        main = response.css_first("div.product_main")
        if main is None:
            return
        stock = main.css_first("p.availability").text(strip=True)
        rating = main.css_first("p.star-rating").attributes.get("class", "").split()
        breadcrumb = response.css("ul.breadcrumb li a")
        upc = response.css_first("table.table-striped td")
        yield {
            "url": response.url,
            "title": main.css_first("h1").text(strip=True),
            "price": main.css_first("p.price_color").text(strip=True),
            "in_stock": stock.startswith("In stock"),
            "rating": next((RATINGS[w] for w in rating if w in RATINGS), None),
            "category": breadcrumb[-1].text(strip=True) if len(breadcrumb) > 1 else None,
            "upc": upc.text(strip=True) if upc is not None else None,
        }
