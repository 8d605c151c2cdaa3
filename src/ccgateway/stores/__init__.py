"""Where state lives: agents, catalog, file recordings and audit in SQL (``sql``, ``schema``);
sessions and event queues in process memory (``memory``) or Redis (``redis``). ``base`` holds
the interfaces and the values that cross them."""
