import streamlit as st

st.title("scheduler_playground")
st.info("Coming soon.")
