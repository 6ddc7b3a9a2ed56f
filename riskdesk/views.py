from __future__ import annotations

from django.shortcuts import redirect


def home(request):
    # The live dashboard takes this URL over; until then the admin is the desk.
    return redirect("admin:index")
