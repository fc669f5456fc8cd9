"""Streamlit-side helpers shared by the pages (bnlr itself never imports Streamlit)."""
