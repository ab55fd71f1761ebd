"""Placeholder: filled in by the API issue."""

from fastapi import APIRouter

router = APIRouter()
