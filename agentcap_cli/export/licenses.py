"""The license ids a dataset card may name: the Hub's list, so a typo (``cc-by-4.1``) is refused
before anything is published instead of showing as an unknown license on the Hub."""

from __future__ import annotations

import difflib
import re

#: The Hub's license identifiers as a card names them, from hub-docs ``docs/hub/repositories-licenses.md``
#: (the table between its ``region licenses`` comments): SPDX ids in lower case, license families
#: (``bsd``, ``cc``, ``gpl`` …), the Hub's own (``llama3``, ``gemma`` …), ``unknown`` and ``other``.
HUB_LICENSES = frozenset("""
    apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda
    cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c
    ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 openmdw-1.1 openrail++ osl-3.0 postgresql
    ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2
    llama3 llama3.1 llama3.2 llama3.3 llama4 grok2-community gemma unknown other
""".split())
LIST_URL = "https://huggingface.co/docs/hub/repositories-licenses"


def hub_license(value: str) -> str:
    """``value`` as the Hub spells it. Case does not matter (SPDX ids match case-insensitively:
    ``MIT`` and ``Apache-2.0`` are ``mit`` and ``apache-2.0``); anything else is a ValueError that
    names the nearest ids."""
    lic = value.strip().lower()
    if lic in HUB_LICENSES:
        return lic
    spelled = re.sub(r"[\s_]+", "-", lic).removesuffix("-license")  # "MIT License", "Apache 2.0"
    near = list(dict.fromkeys([*([spelled] if spelled in HUB_LICENSES else []),
                               *difflib.get_close_matches(spelled, sorted(HUB_LICENSES), n=3, cutoff=0.6)]))[:3]
    hint = f" — did you mean {' or '.join(near)}?" if near else ""
    raise ValueError(f"{value!r} is not a license id the Hub knows{hint} (the list: {LIST_URL}; any other license: "
                     "other, with --license-name and --license-link)")
