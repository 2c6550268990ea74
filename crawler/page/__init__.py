"""A page, from its request to its outcome: the page runner (one pipeline for the crawl and
the one-page tools), its pure retry and link rules, hooks, item pipelines, forms, sitemaps, and
requests in their stored form."""
