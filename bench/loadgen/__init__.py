"""The one load generator every gRPC scenario uses (Go, in `generator/`): its build, the
request files it sends, and the Python side that runs it and reads what it measured."""
