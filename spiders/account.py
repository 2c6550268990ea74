"""Log in through a form (its CSRF token included), then read every page of a table that only
a signed-in user sees, with XPath.

    python -m crawler demo --serve --port 8000          # in another terminal
    python -m crawler run spiders/account.py -o orders.csv
    python -m crawler run spiders/account.py -a username=alice -a password=wonderland --fresh

The session cookie is kept in the store with the pages: kill the crawl and run the same command
again, and it goes on signed in, without logging in twice.
"""

from crawler import FormRequest, Spider


class Account(Spider):
    name = "account"
    start_urls = ["http://127.0.0.1:8000/login"]
    username = "reader"
    password = "secret"

    async def parse(self, response):
        """The login page: submit its form as a browser would (hidden fields and all)."""
        yield FormRequest.from_response(
            response,
            formid="login",
            formdata={"username": self.username, "password": self.password},
            callback=self.parse_orders,
        )

    async def parse_orders(self, response):
        """A page of orders (the login redirects to the first one)."""
        if not response.xpath('//p[@class="user"]'):
            raise ValueError(f"not signed in at {response.url}: check username and password")
        for row in response.xpath('//table[@id="orders"]/tr[td]'):
            order, date, book, total = (cell.xpath("string()").get() for cell in row.xpath("td"))
            yield {"order": order, "date": date, "book": book, "total": total}
        next_page = response.xpath('//li[@class="next"]/a/@href').get()
        if next_page:
            yield response.follow(next_page, callback=self.parse_orders)
