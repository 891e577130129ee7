"""Secret detectors: token formats with a recognisable shape, compiled as one pattern set.

The formats are facts taken from the maintained rule sets (detect-secrets' plugins, gitleaks' and
trufflehog's rules, the vendors' own token docs) plus the keys LLM agents carry: Hugging Face,
Anthropic (API and Claude OAuth), OpenAI (legacy and ``sk-proj-`` / ``sk-svcacct-`` / ``sk-admin-``),
OpenRouter, Groq, Google, xAI, Replicate, Perplexity, Tavily, LangSmith. Only formats a regular
expression can recognise on its own are here: entropy and keyword heuristics trip on request ids and
base64 images in every capture, and a gate that blocks every push gets switched off.

How: the whole set is one RE2 pattern (pyarrow's compute functions, already a dependency), run over
whole arrow columns in C; a DFA reads each byte once whatever the number of rules. Python's ``re``
confirms the few texts RE2 flags, one rule at a time (a literal prefix lets ``re`` skip ahead; the
same rules as one ``re`` alternation crawl at a few MB/s), and checks what RE2 cannot: the ends of a
token and its left boundary, which is **escape-aware**. In JSON text a newline is the two characters
``\\n``, so ``…\\nhf_abc…`` (a token at the start of a line of tool output) has the letter ``n``
before it: a candidate preceded by a word character counts when that character ends an escape
(``\\n \\t \\r \\b \\f``, ``\\uXXXX``); ``\\"`` and ``\\\\`` end in a non-word character anyway.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from agentcap_cli.export.layers import TRIGGER, TRIGGER_BOTH

WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_UESC = re.compile(r"\\u[0-9A-Fa-f]{4}")
END = r"(?![A-Za-z0-9_-])"  # a token ends where token characters end


def ci(word: str) -> str:
    """``word`` case-insensitively, as character classes (an inline ``(?i)`` would cost the
    pattern its fast skip-ahead)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


@dataclass(frozen=True)
class Rule:
    id: str
    name: str  # what a finding says it is
    regex: str  # may name the secret part ``(?P<secret>…)``; else the whole match is the secret
    boundary: bool = True  # must not start inside a word (see the module docstring)
    check: Callable[[re.Match[str]], bool] | None = None  # a match that is no secret after all (a placeholder)


_PLACEHOLDER = re.compile(
    r"(?i)(?:pass(?:word|wd)?|pwd|secret|changeme|change_?me|example|test(?:ing)?|postgres|root|admin|user(?:name)?|"
    r"guest|mysql|mongo(?:db)?|redis|rabbitmq|default|db_?pass(?:word)?|your_?password|my_?password|mypass|"
    r"password1?2?3?|p@ssw0rd|123456?|12345678|foo|bar|baz|none|null|hidden|redacted|masked|dummy|fake|sample|"
    r"x+|\*+|\.+|-+|<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{[^}]*\}\}|%[sd]|:[A-Za-z_]+|\[[^\]]*\]|"
    r"%\([A-Za-z_]+\)s|[A-Za-z0-9]{1,4}\*+)"
)


def _real_password(m: re.Match[str]) -> bool:
    """A URL's password that is not a placeholder (``postgres:postgres``, ``${DB_PASSWORD}``,
    ``<password>``, an already masked ``****``) nor the user name again."""
    secret = unquote(m.group("secret"))
    return not _PLACEHOLDER.fullmatch(secret) and secret != unquote(m.group("user"))


_AWS_KEY = ci("aws") + r"[\w.-]{0,20}?" + r"(?:" + "|".join(ci(k) for k in ("key", "pwd", "pw", "password", "pass", "token")) + ")"
RULES: tuple[Rule, ...] = (
    # LLM providers
    Rule("huggingface", "HuggingFace token", r"hf_[A-Za-z0-9]{30,40}" + END),
    Rule("huggingface-org", "HuggingFace org token", r"api_org_[A-Za-z0-9]{30,40}" + END),
    Rule("anthropic", "Anthropic API key", r"sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{32,200}" + END),
    Rule("claude-oauth", "Claude OAuth token", r"sk-ant-o[ar]t\d{2}-[A-Za-z0-9_-]{32,200}" + END),
    Rule("openrouter", "OpenRouter key", r"sk-or-v1-[0-9a-f]{64}" + END),
    Rule("openai-project", "OpenAI key", r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,250}" + END),
    Rule("openai", "OpenAI key", r"sk-[A-Za-z0-9_-]*[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}" + END),
    Rule("groq", "Groq key", r"gsk_[A-Za-z0-9]{48,56}" + END),
    Rule("google", "Google API key", r"AIza[0-9A-Za-z_-]{35}" + END),
    Rule("xai", "xAI key", r"xai-[A-Za-z0-9]{70,90}" + END),
    Rule("replicate", "Replicate token", r"r8_[A-Za-z0-9]{37}" + END),
    Rule("perplexity", "Perplexity key", r"pplx-[A-Za-z0-9]{48}" + END),
    Rule("tavily", "Tavily key", r"tvly-(?:dev-|prod-)?[A-Za-z0-9]{32}" + END),
    Rule("langsmith", "LangSmith key", r"lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}" + END),
    # code hosting and package registries
    Rule("github", "GitHub token", r"gh[pousr]_[A-Za-z0-9_]{36,251}" + END),
    Rule("github-pat", "GitHub fine-grained token", r"github_pat_[A-Za-z0-9_]{60,255}" + END),
    Rule("gitlab", "GitLab token",
         r"(?:glpat|gldt|glft|glsoat|glrt|glptt|glimt|gloas|glagent|glcbt)-[A-Za-z0-9_-]{20,255}" + END),
    Rule("gitlab-runner", "GitLab runner token", r"GR1348941[A-Za-z0-9_-]{20,50}" + END),
    Rule("npm", "npm token", r"npm_[A-Za-z0-9]{36}" + END),
    Rule("npmrc", "npm auth token", r"_authToken=\s*(?P<secret>[A-Za-z0-9_-]{36,})", boundary=False),
    Rule("pypi", "PyPI token", r"pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,}" + END),
    # clouds and SaaS
    Rule("aws-key-id", "AWS access key id", r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}" + END),
    Rule("aws-secret", "AWS secret access key",
         _AWS_KEY + r"[\w.-]{0,20}?" + r"""(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?(?P<secret>[0-9A-Za-z/+]{40})(?![0-9A-Za-z/+])""",
         boundary=False),
    Rule("aws-secret-quoted", "AWS secret access key",
         _AWS_KEY + r".{0,20}?" + r"""\\?["'](?P<secret>[0-9A-Za-z/+]{40})\\?["']""", boundary=False),
    Rule("slack", "Slack token", r"xox[abposr]-(?:\d+-)+[A-Za-z0-9]+" + END),
    Rule("slack-webhook", "Slack webhook", r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+"),
    Rule("stripe", "Stripe key", r"[rs]k_live_[0-9A-Za-z]{24,99}" + END),
    Rule("sendgrid", "SendGrid key", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}" + END),
    Rule("square", "Square OAuth secret", r"sq0csp-[0-9A-Za-z_-]{43}" + END),
    Rule("twilio", "Twilio key", r"(?:AC|SK)[a-z0-9]{32}" + END),
    Rule("aws-secret-json", "AWS secret access key",
         ci("secret") + r"_?" + ci("access") + r"_?" + ci("key") + r"""(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?"""
         r"(?P<secret>[0-9A-Za-z/+]{40})(?![0-9A-Za-z/+])", boundary=False),
    Rule("aws-session-token", "AWS session token",
         ci("session") + r"_?" + ci("token") + r"""(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?"""
         r"(?P<secret>(?:IQoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz)[0-9A-Za-z/+=]{80,2000})", boundary=False),
    Rule("azure-storage-key", "Azure storage key",
         ci("accountkey") + r"\s*=\s*(?P<secret>[A-Za-z0-9+/]{86}==)", boundary=False),
    Rule("azure-shared-access-key", "Azure shared access key",
         ci("sharedaccesskey") + r"\s*=\s*(?P<secret>[A-Za-z0-9+/]{42,43}=)", boundary=False),
    Rule("azure-sas", "Azure SAS signature",
         r"sv=\d{4}-\d{2}-\d{2}[^\s\"'<>]{0,400}?[&?;]sig=(?P<secret>(?:[A-Za-z0-9+/]|%2[BbFf]){30,100}(?:=|%3[Dd]){0,2})",
         boundary=False),
    Rule("azure-ad-secret", "Azure AD client secret", r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])"),
    Rule("google-oauth-secret", "Google OAuth client secret", r"GOCSPX-[A-Za-z0-9_-]{28}" + END),
    Rule("google-oauth-token", "Google OAuth access token", r"ya29\.[0-9A-Za-z_-]{30,500}" + END),
    Rule("discord-webhook", "Discord webhook",
         r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{5,30}/[A-Za-z0-9_-]{60,70}" + END),
    Rule("telegram", "Telegram bot token", r"\d{8,10}:AA[0-9A-Za-z_-]{33}" + END),
    Rule("mailgun", "Mailgun key", r"key-[0-9a-f]{32}" + END),
    Rule("mailchimp", "Mailchimp key", r"[0-9a-f]{32}-us\d{1,2}" + END),
    Rule("shopify", "Shopify token", r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}" + END),
    Rule("databricks", "Databricks token", r"dapi[a-f0-9]{32}(?:-\d)?" + END),
    Rule("digitalocean", "DigitalOcean token", r"do[opr]_v1_[a-f0-9]{64}" + END),
    Rule("atlassian", "Atlassian API token", r"ATATT3[A-Za-z0-9_=-]{186}" + END),
    Rule("linear", "Linear API key", r"lin_api_[A-Za-z0-9]{40}" + END),
    Rule("notion", "Notion token", r"(?:ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43})" + END),
    Rule("postman", "Postman API key", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}" + END),
    Rule("doppler", "Doppler token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}" + END),
    Rule("vault", "HashiCorp Vault token", r"hv[sb]\.[A-Za-z0-9_-]{90,120}" + END),
    Rule("terraform", "Terraform Cloud token", r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}" + END),
    Rule("pulumi", "Pulumi token", r"pul-[a-f0-9]{40}" + END),
    Rule("grafana", "Grafana token", r"(?:glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})" + END),
    Rule("supabase", "Supabase token", r"sbp_[a-f0-9]{40}" + END),
    Rule("sentry", "Sentry token", r"(?:sntrys_eyJ[A-Za-z0-9+/=_-]{40,400}|sntryu_[a-f0-9]{64})" + END),
    # credentials in URLs and headers
    Rule("url-password", "URL with a password",
         r"(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|amqps?|redis|rediss|mssql|sqlserver|clickhouse|cockroachdb|"
         r"couchdb|cassandra|neo4j(?:\+s|\+ssc)?|bolt|nats|kafka|ftps?|sftp|smtps?|imaps?|ldaps?|https?|git|ssh)"
         r"(?:\+[a-z0-9]+)?://(?P<user>[^\s:/?#@'\"\\<>]{0,64}):(?P<secret>[^\s@/?#'\"\\<>]{1,128})@"
         r"[A-Za-z0-9.\[\]_-]+", boundary=False, check=_real_password),
    Rule("basic-auth", "HTTP basic credentials",
         ci("authorization") + r"""(?:\\?["'])?\s*:\s*(?:\\?["'])?""" + ci("basic") + r"\s+(?P<secret>[A-Za-z0-9+/]{12,400}={0,2})",
         boundary=False),
    # generic formats
    Rule("private-key", "Private key",
         r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:\\+[nr]|\s)*(?:[A-Za-z0-9+/=]|\\+/|\\+[nr]|\s){32}",
         boundary=False),
    Rule("putty-key", "Private key", r"PuTTY-User-Key-File-\d: ", boundary=False),
    Rule("private-key-der", "Private key",  # a PEM body without its header lines (PKCS#8 and PKCS#1 RSA, EC, Ed25519)
         r"(?:MII[A-Za-z0-9+/]{2}IBADANBgkqhkiG9w0BAQEFAASC|MII[A-Za-z0-9+/]{2}IBAAKCA[QgYw]EA|"
         r"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg|MC4CAQAwBQYDK2VwBCIEI)[A-Za-z0-9+/]{20}"),
    Rule("jwt", "JSON web token", r"eyJ[A-Za-z0-9_-]{10,}={0,2}\.eyJ[A-Za-z0-9_-]{10,}={0,2}\.[A-Za-z0-9_-]{10,}={0,2}" + END),
)


def _strict(rule: Rule) -> re.Pattern[str]:
    return re.compile(rule.regex)


def _relaxed(rule: Rule) -> str:
    """The rule for RE2: a superset of what it matches, and small. No lookarounds or named groups
    (RE2 has none); every repeat ``{m,n}`` becomes ``{min(m, 16),}`` (more counts match, so still a
    superset), since RE2 spells a repeat out and pyarrow compiles the pattern on every call —
    28 ms a call with the full counts, 3 ms with these."""
    rx = re.sub(r"\(\?<?!\[[^\]]*\]\)", "", rule.regex)
    rx = re.sub(r"\(\?P<\w+>", "(?:", rx)
    return re.sub(r"\{(\d+)(?:,\d*)?\}", lambda m: f"{{{min(int(m.group(1)), 16)},}}", rx)


COMPILED = tuple((rule, _strict(rule)) for rule in RULES)
def _broad(rx: str) -> bool:
    """A pattern that may start at any character of a base64 run (``[A-Za-z0-9]{14,}\\.atlasv1``)."""
    return re.match(r"\(?(?:\?:)?(?:\[(?!(.)(.)\])|\\d|\\w|\.)", rx) is not None


# The whole set as RE2 patterns (through pyarrow, already a dependency): DFAs that read each byte
# once whatever the number of rules, over a whole arrow column in one call (call it with many texts
# at once: each call compiles the pattern, ~3 ms). Two of them: the rules that may start anywhere in
# a run of base64 characters apart from the rest, since in one DFA their states multiply and a
# base64 payload is read at 5 MB/s instead of 100.
_RELAXED = [_relaxed(r) for r in RULES]
_BROAD = [i for i, rx in enumerate(_RELAXED) if _broad(rx)]
_NARROW = [i for i in range(len(RULES)) if i not in _BROAD]


def _union(group: list[int]) -> str:
    return "|".join(f"(?:{_RELAXED[i]})" for i in group)


PREFILTERS = (_union(_NARROW), _union(_BROAD))
# the rules in groups of eight (the broad ones in one), each as one RE2 pattern: which of them to run
_GROUPS = tuple((_union(group), frozenset(group))
                for group in [_NARROW[k:k + 8] for k in range(0, len(_NARROW), 8)] + [_BROAD])
WINDOW = 1 << 16  # a long text is checked in windows this size; only the flagged ones in Python
OVERLAP = 4096  # longer than any token the rules accept (JWTs aside)


@dataclass(frozen=True)
class Hit:
    """One detected secret in one text: where (character offsets) and what."""

    rule: Rule
    start: int  # of the secret (for keyword rules: after the keyword)
    end: int
    secret: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.secret)


@functools.lru_cache(maxsize=1 << 16)
def fingerprint(secret: str) -> str:
    """The allowlist key of a secret: sha256 of its text (escapes undone, whitespace removed, so
    the same key found in JSON text and in decoded text has one fingerprint)."""
    return hashlib.sha256(normalise(secret).encode("utf-8", "surrogatepass")).hexdigest()


_ESCAPED = re.compile(r"\\+[nrt/]|\s")


def normalise(secret: str) -> str:
    """The secret without the escapes JSON (once or twice) put in it, and without whitespace."""
    if _ESCAPED.search(secret) is None:
        return secret
    return re.sub(r"\\+[nrt]|\s", "", re.sub(r"\\+/", "/", secret))


def mask(secret: str) -> str:
    """What a report may print: the first four characters."""
    return secret[:4] + "…****" if len(secret) > 8 else "****"


def _any_rule(arr: Any) -> Any:
    """Per text: may any rule match (the prefilters, or'ed)."""
    hits = pc.match_substring_regex(arr, PREFILTERS[0])
    for more in PREFILTERS[1:]:
        hits = pc.or_(hits, pc.match_substring_regex(arr, more))
    return hits


def flagged(texts: Any, decoding: bool = True) -> list[int]:
    """Indexes of the texts (an arrow string array or a list of str) that may hold a secret —
    plainly, or (``decoding``) in an encoding :mod:`.layers` undoes: the RE2 prefilter, one pass in
    C. :func:`find` (and :func:`.layers.readings`) then say what, exactly, and where."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.large_string())
    if len(arr) == 0:
        return []
    hits = _any_rule(arr)
    if decoding:
        hits = pc.or_(hits, pc.match_substring_regex(arr, TRIGGER))
        for first, second in TRIGGER_BOTH:
            hits = pc.or_(hits, pc.and_(pc.match_substring_regex(arr, first), pc.match_substring_regex(arr, second)))
    return pc.indices_nonzero(pc.fill_null(hits, False)).to_pylist()


def prefiltered(texts: list[str]) -> list[tuple[int, frozenset[int]]]:
    """:func:`flagged` without decoding, for :func:`find`: each flagged text's index, and the rules
    (their places in :data:`RULES`) that may match in it — the flagged texts go through RE2 once
    more, in groups of rules, so Python runs only the rules of the groups that match."""
    if not texts:
        return []
    arr = pa.array(texts, pa.large_string())
    idx = pc.indices_nonzero(pc.fill_null(_any_rule(arr), False))
    if len(idx) == 0:
        return []
    sub = arr.take(idx)
    rules: list[set[int]] = [set() for _ in range(len(idx))]
    for pattern, orders in _GROUPS:
        for j in pc.indices_nonzero(pc.fill_null(pc.match_substring_regex(sub, pattern), False)).to_pylist():
            rules[j] |= orders
    return [(i, frozenset(r)) for i, r in zip(idx.to_pylist(), rules)]


def _left_ok(text: str, start: int) -> bool:
    if start == 0 or text[start - 1] not in WORD:
        return True
    if start >= 2 and text[start - 2] == "\\" and text[start - 1] in "nrtbf":
        return True
    return start >= 6 and _UESC.fullmatch(text, start - 6, start) is not None


def _spans(text: str, pos: int, endpos: int) -> list[tuple[int, int]]:
    """(pos, endpos) ranges of ``text[pos:endpos]`` worth a look: all of it when short, else the
    windows the prefilter flags (each reaching ``OVERLAP`` into the next, so no token is cut)."""
    if endpos - pos <= 4 * WINDOW:
        return [(pos, endpos)]
    starts = range(pos, endpos, WINDOW)
    chunks = [text[s:min(endpos, s + WINDOW + OVERLAP)] for s in starts]
    return [(starts[i], min(endpos, starts[i] + WINDOW + OVERLAP)) for i in flagged(chunks, decoding=False)]


def find(text: str, pos: int = 0, endpos: int | None = None, rules: frozenset[int] | None = None) -> list[Hit]:
    """Every secret in ``text[pos:endpos]`` (JSON text or decoded text alike), in order; where two
    rules match the same characters, the first rule of :data:`RULES` names the finding (and where
    a window's end cut a token short, the whole one from the next window wins). ``rules``: only
    these may match (:func:`prefiltered` says which)."""
    hits: list[tuple[int, int, int, Hit]] = []
    for a, b in _spans(text, pos, len(text) if endpos is None else endpos):
        for order, (rule, rx, g) in enumerate(_FIND):
            if rules is not None and order not in rules:
                continue
            for m in rx.finditer(text, a, b):
                if rule.boundary and not _left_ok(text, m.start()):
                    continue
                if rule.check is not None and not rule.check(m):
                    continue
                start, end = m.span(g)
                hits.append((start, order, start - end, Hit(rule, start, end, m.group(g))))
    hits.sort(key=_ORDER)
    out: list[Hit] = []
    for *_, hit in hits:
        if not out or hit.start >= out[-1].end:
            out.append(hit)
    return out


_FIND = tuple((rule, rx, "secret" if "secret" in rx.groupindex else 0) for rule, rx in COMPILED)
_ORDER = operator.itemgetter(0, 1, 2)
