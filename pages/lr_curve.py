import streamlit as st

st.title("lr_curve")
st.info("Coming soon.")
