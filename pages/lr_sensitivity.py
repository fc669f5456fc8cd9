import streamlit as st

st.title("lr_sensitivity")
st.info("Coming soon.")
