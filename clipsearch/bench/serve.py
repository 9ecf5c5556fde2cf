"""`clipsearch bench serve`: how fast a running `clipsearch serve` answers over HTTP.

The library is `bench query`'s synthetic one (clustered vectors standing in for photos, the
model's towers exported with random weights), and the server is a real `clipsearch serve`
process on 127.0.0.1.  One keep-alive connection, as the page's script has, asks
`/results?q=...` (what the search box fetches as the user types) for distinct text queries,
then drops distinct 12 MP photos that are not in the library (`POST /upload`, then
`/results?img=...`; the first drop, which also opens the image tower, is reported apart).
Every answer is checked: status 200 and a full page of results, or the benchmark fails.
Beside it, the same text queries through `Library.search` in this process show what HTTP and
the HTML add, and `bench query`'s warm CLI query on the same library gives a ratio to carry
over to the figures of a quieter hour.  CPU times (the server's from /proc, per query) are
not inflated by other jobs on a shared machine, as wall times are.
"""

from __future__ import annotations

import http.client
import json
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

from .index import photo_folder
from .query import PHOTO_MEGAPIXELS, QUERY, synthetic_library, warm_query_seconds

QUERIES = 50
DROPS = 5
PAGE = 30  # results per answer, clipsearch.web.app.PAGE_SIZE
START_TIMEOUT_S = 300


def run(
    n: int,
    *,
    model: str = "ViT-B-32",
    queries: int = QUERIES,
    drops: int = DROPS,
    workdir: Path | None = None,
) -> dict:
    """All figures for one library size, as a dict."""
    if n < PAGE + 1:
        raise ValueError(f"bench serve needs more than {PAGE} vectors")
    figures: dict = {"vectors": n, "model": model, "queries": queries, "drops": drops}
    texts = [f"{QUERY} number {i}" for i in range(queries + 1)]
    with tempfile.TemporaryDirectory(dir=workdir, prefix="clipsearch-bench-") as tmp:
        library = Path(tmp) / "library"
        started = time.perf_counter()
        synthetic_library(library, n, model)
        figures["library_build_s"] = round(time.perf_counter() - started, 1)
        figures["library_search_ms"], figures["library_search_cpu_ms"] = library_search_ms(
            library, texts[1:]
        )
        figures["cli_warm_query_ms"] = _ms(warm_query_seconds(library))
        photos = _photos(Path(tmp), drops + 1) if drops else []
        with served(library) as client:
            figures["server_start_s"] = client.start_s
            figures["first_query_ms"] = _ms(client.results(texts[0]))
            cpu_before = client.cpu_seconds()
            times = [client.results(text) for text in texts[1:]]
            figures["query_cpu_ms"] = _ms((client.cpu_seconds() - cpu_before) / queries)
            figures["query_ms"] = _ms(statistics.median(times))
            figures["query_p95_ms"] = _ms(_percentile(times, 95))
            figures["query_max_ms"] = _ms(max(times))
            if photos:  # the first drop also opens the image tower
                figures["first_drop_ms"] = _ms(client.drop(photos[0]))
                figures["drop_query_ms"] = _ms(statistics.median(map(client.drop, photos[1:])))
            figures["server_rss_mb"] = client.rss_mb()
    figures["http_overhead_ms"] = round(figures["query_ms"] - figures["library_search_ms"], 2)
    cli = figures["cli_warm_query_ms"]  # a difference of two runs: 0 when noise ate it
    figures["ratio_to_cli_warm"] = round(figures["query_ms"] / cli, 2) if cli else None
    return figures


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _photos(work: Path, count: int) -> list[Path]:
    return sorted(photo_folder(work, count, PHOTO_MEGAPIXELS, None).glob("*.jpg"))[:count]


def library_search_ms(library: Path, texts: list[str]) -> tuple[float, float]:
    """Median wall time of the same searches through the Python API once warm, and their
    mean CPU time (which other jobs on a shared machine do not inflate)."""
    from ..library import Library

    with Library.open(library) as lib:
        lib.search("warm up", top=PAGE + 1)
        times = []
        cpu_before = time.process_time()
        for text in texts:
            started = time.perf_counter()
            lib.search(text, top=PAGE + 1)
            times.append(time.perf_counter() - started)
        cpu = (time.process_time() - cpu_before) / len(texts)
    return _ms(statistics.median(times)), _ms(cpu)


class Client:
    """One keep-alive HTTP connection to the server, with its cookie."""

    def __init__(self, proc: subprocess.Popen, link: str, start_s: float) -> None:
        parts = urlsplit(link)
        self.proc = proc
        self.start_s = start_s
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        token = parts.query.removeprefix("token=")
        self.headers = {"Cookie": f"clipsearch-{parts.port}={token}"}

    def _ask(self, method: str, path: str, body: bytes | None = None) -> bytes:
        self.conn.request(method, path, body=body, headers=self.headers)
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{method} {path} answered {answer.status}: {data[:300]!r}")
        return data

    def _check_page(self, data: bytes, what: str) -> None:
        cards = data.count(b'<figure class="card"')
        if cards != PAGE:
            raise RuntimeError(f"{what}: {cards} results, not {PAGE}")

    def results(self, text: str) -> float:
        """Seconds for one search-as-you-type request."""
        started = time.perf_counter()
        data = self._ask("GET", "/results?q=" + quote(text))
        elapsed = time.perf_counter() - started
        self._check_page(data, f"query {text!r}")
        return elapsed

    def drop(self, photo: Path) -> float:
        """Seconds from sending a dropped photo to having its results."""
        data = photo.read_bytes()
        started = time.perf_counter()
        key = json.loads(self._ask("POST", "/upload", data))["key"]
        page = self._ask("GET", "/results?img=" + key)
        elapsed = time.perf_counter() - started
        self._check_page(page, f"dropped {photo.name}")
        return elapsed

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (all threads).  Each live thread's
        schedstat counts nanoseconds; /proc's stat counts clock ticks (10 ms), and two quick
        queries of a small library once used none (`query_cpu_ms` 0.0, in a clean-clone run)."""
        import os

        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):  # a thread that ended; no schedstat
                continue
        if total:
            return total / 1e9
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """The server's resident memory, from /proc (0 where there is none)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0.0
        line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
        return round(int(line.split()[1]) / 1024, 1)


@contextmanager
def served(library: Path):
    """A real `clipsearch serve` on the library, stopped with Ctrl-C afterwards."""
    command = [sys.executable, "-m", "clipsearch", "serve", "--no-open", "--port", "0"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "--library", str(library)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
        link = proc.stdout.readline().decode().strip() if ready else ""
        if not link.startswith("http://"):
            proc.kill()
            raise RuntimeError(f"serve did not start: {proc.stderr.read().decode()[-2000:]}")
        client = Client(proc, link, round(time.perf_counter() - started, 2))
        yield client
        client.conn.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
