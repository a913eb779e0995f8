"""USD/COP platform dashboard: ``.venv/bin/streamlit run streamlit_app/app.py``.

Reads what Dagster materialized (warehouse, lake, Dagster instance) through ``data.py``; never writes.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402
import streamlit as st  # noqa: E402

st.set_page_config(page_title="USD/COP platform", page_icon="💱", layout="wide")

pages = [
    st.Page("views/terminal.py", title="Trading terminal", icon="📈", default=True),
    st.Page("views/model.py", title="Model and backtest", icon="🤖"),
    st.Page("views/research.py", title="Research", icon="🧪"),
    st.Page("views/pipeline.py", title="Pipeline", icon="🛠️"),
    st.Page("views/features.py", title="Features", icon="🧮"),
    st.Page("views/quality.py", title="Data quality", icon="🔍"),
    st.Page("views/audit.py", title="Audit", icon="🧾"),
]
page = st.navigation(pages)
common.banner(common.context())
page.run()
