"""Page through a JSON API that takes POSTs: send a query, read the results, ask for the next
page until there is none.

    python -m crawler demo --serve --port 8000          # in another terminal
    python -m crawler run spiders/search_api.py -a query=garden -o books.jsonl
"""

from crawler import JsonRequest, Spider


class SearchApi(Spider):
    name = "search_api"
    api = "http://127.0.0.1:8000/api/search"
    query = "the"

    def start_requests(self):
        yield JsonRequest(self.api, data={"query": self.query, "page": 1})

    async def parse(self, response):
        page = response.json()
        for book in page["results"]:
            yield {
                "title": book["title"],
                "price": book["price"],
                "url": response.urljoin(book["url"]),
            }
        if page["next_page"]:
            yield JsonRequest(self.api, data={"query": self.query, "page": page["next_page"]})
