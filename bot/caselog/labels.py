"""Danish names for what a participation entry holds, shared by the FHIR and PDF sinks.

An unknown kind or signal (a newer schema version) is shown as its code, never dropped.
"""

from __future__ import annotations

KIND_DA = {
    "message": "Besked",
    "checkin": "Tjek-in",
    "caseworker_rating": "Rådgiverens vurdering",
    "consent_given": "Samtykke til kanal",
    "rights_note": "Besked om rettighed",
    "keyword_stop": "STOP",
    "keyword_start": "START",
    "keyword_help": "HJÆLP",
    "keyword_my_data": "MINE DATA",
    "safety_escalation": "Akut markering til døgnvagt",
    "words_used": "Sådan blev barnets ord brugt",
    "handover": "Sagen overdraget til ny rådgiver",
    "data_erased": "Stemmes kopi slettet (kryptografisk sletning)",
}
SIGNAL_DA = {
    "risk": "Risiko for barnets sikkerhed",
    "§48-request": "Anmodning om anbringelse uden for hjemmet (Barnets lov § 48)",
    "disclosure": "Barnet fortæller om vold eller overgreb",
}
ACTOR_DA = {
    "child": "Barnet",
    "caseworker": "Rådgiveren",
    "bot": "Stemme (automatisk besked)",
    "system": "Stemme",
}
STATUS_DA = {"completed": "besvaret", "abandoned": "afbrudt", "expired": "udløbet"}
DIRECTION_DA = {"in": "Fra barnet", "out": "Til barnet"}
