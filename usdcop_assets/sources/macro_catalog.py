"""The canonical macro indicators the features use, and where each one comes from.

One row per indicator: its platform name (what L1 columns and L3 features are called), its FRED
series id when FRED publishes it, and its column in the wide macro file the earlier system kept
(``/work/shared/data/macro_indicators_daily_to_2024h1.csv.gz``). L0 keeps each source's own
``series_id``; :func:`indicator_of` maps any of those ids back to the platform name so L1 can pivot
without knowing which source wrote a row.

Pure Python; no Dagster import.

Why a FRED id can be a *proxy*: FRED does not publish the ICE DXY. ``DTWEXBGS`` (Nominal Broad U.S.
Dollar Index) moves with it but sits on another scale (~120 vs ~105 in 2024). Both map to ``dxy``;
L0 keeps both rows apart by ``source``, and L1 must pick one source per indicator instead of mixing
levels inside a z-score window (``fred_is_proxy`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from usdcop_assets.sources.fred import DEFAULT_SERIES


@dataclass(frozen=True)
class Indicator:
    name: str  # canonical platform name
    description: str
    unit: str
    file_column: str | None  # column in the wide macro file
    fred_id: str | None = None  # FRED series id, when FRED has it
    fred_is_proxy: bool = False  # the FRED series is a stand-in on a different scale


# Daily series only: the monthly/quarterly columns of the file (CPI, GDP, trade, ...) are read into
# L0 by the file reader as they are, but no daily feature uses them yet, so they have no canonical name.
INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "dxy",
        "US dollar index (ICE DXY; FRED broad index as proxy)",
        "index",
        "fxrt_index_dxy_usa_d_dxy",
        DEFAULT_SERIES["dxy_proxy"],
        fred_is_proxy=True,
    ),
    Indicator("vix", "CBOE volatility index", "index", "volt_vix_usa_d_vix", DEFAULT_SERIES["vix"]),
    Indicator("embi_col", "JP Morgan EMBI spread, Colombia", "bp", "crsk_spread_embi_col_d_embi"),
    Indicator("usdmxn", "USD/MXN spot", "MXN per USD", "fxrt_spot_usdmxn_mex_d_usdmxn"),
    Indicator("usdclp", "USD/CLP spot", "CLP per USD", "fxrt_spot_usdclp_chl_d_usdclp"),
    Indicator("wti", "WTI crude oil", "USD/bbl", "comm_oil_wti_glb_d_wti", DEFAULT_SERIES["wti"]),
    Indicator("brent", "Brent crude oil", "USD/bbl", "comm_oil_brent_glb_d_brent", DEFAULT_SERIES["brent"]),
    Indicator("gold", "Gold spot", "USD/oz", "comm_metal_gold_glb_d_gold"),
    Indicator("coffee", "Coffee (arabica) front future", "USc/lb", "comm_agri_coffee_glb_d_coffee"),
    Indicator("ust10y", "US Treasury 10-year yield", "%", "finc_bond_yield10y_usa_d_ust10y", DEFAULT_SERIES["us10y"]),
    Indicator("ust2y", "US Treasury 2-year yield", "%", "finc_bond_yield2y_usa_d_dgs2", DEFAULT_SERIES["us2y"]),
    Indicator("col10y", "Colombia TES 10-year yield", "%", "finc_bond_yield10y_col_d_col10y"),
    Indicator("col5y", "Colombia TES 5-year yield", "%", "finc_bond_yield5y_col_d_col5y"),
    Indicator("colcap", "COLCAP equity index", "index", "eqty_index_colcap_col_d_colcap"),
    Indicator("ibr", "IBR overnight rate, Colombia", "%", "finc_rate_ibr_overnight_col_d_ibr"),
    Indicator("policy_rate_col", "Banco de la República policy rate", "%", "polr_policy_rate_col_d_tpm"),
    Indicator("prime_rate_usa", "US bank prime loan rate", "%", "polr_prime_rate_usa_d_prime"),
)

BY_NAME: dict[str, Indicator] = {i.name: i for i in INDICATORS}

# Every source id (FRED id or file column) -> canonical name. Built once; ids are unique across sources.
_ID_TO_NAME: dict[str, str] = {}
for _ind in INDICATORS:
    for _sid in (_ind.file_column, _ind.fred_id):
        if _sid:
            if _sid in _ID_TO_NAME:  # pragma: no cover - guards edits of the table above
                raise RuntimeError(f"macro catalog: series id {_sid!r} is mapped twice")
            _ID_TO_NAME[_sid] = _ind.name


def indicator_of(series_id: str) -> str | None:
    """Canonical indicator name of a source's series id, or None when the catalog does not map it."""
    return _ID_TO_NAME.get(series_id)


def fred_series() -> dict[str, str]:
    """Canonical name -> FRED id, for the indicators FRED publishes."""
    return {i.name: i.fred_id for i in INDICATORS if i.fred_id}


def file_columns() -> dict[str, str]:
    """Canonical name -> column of the wide macro file."""
    return {i.name: i.file_column for i in INDICATORS if i.file_column}
