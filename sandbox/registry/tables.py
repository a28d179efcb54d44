"""The workflow's tables (Art. 9 to 24), on the store's one ``metadata``.

Imported by :meth:`sandbox.core.store.Store._migrate` before ``create_all``, so a new
home gets them with the core tables. States are stored as the values of the
Enums in :mod:`policies.workflow`; JSON columns hold small policy data (scopes,
scores, figures) exactly as the pure rules read them.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, Text, UniqueConstraint

from sandbox.core.store import metadata

P = "principals.id"


def _times() -> list[Column]:
    return [
        Column("created_at", String(40), nullable=False),
        Column("updated_at", String(40), nullable=False),
    ]


notices = Table(
    "notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
    Column("domain", String(200), nullable=False),
    Column("scenario", Text, nullable=False),
    Column("jurisdiction", String(32), nullable=False),
    Column("datasets_json", Text, nullable=False),
    Column("conditions", Text, nullable=False),
    Column("deadline", String(40), nullable=False),
    Column("pass_rule_json", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("published_by", Integer, ForeignKey(P), nullable=False),
    *_times(),
)

applications = Table(
    "applications",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("notice_id", Integer, ForeignKey("notices.id"), nullable=False),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("scenario", Text, nullable=False),
    Column("datasets_json", Text, nullable=False),  # {dataset: [columns] | null}
    Column("job_kinds_json", Text, nullable=False),
    Column("product_kinds_json", Text, nullable=False),
    Column("security_measures", Text, nullable=False),
    Column("security_officer", String(200), nullable=False),  # Art. 20
    Column("incident_plan", Text, nullable=False),  # Art. 21
    Column("status", String(20), nullable=False),
    *_times(),
)

review_appointments = Table(
    "review_appointments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("application_id", Integer, ForeignKey("applications.id"), nullable=False),
    Column("reviewer_id", Integer, ForeignKey(P), nullable=False),
    Column("appointed_by", Integer, ForeignKey(P), nullable=False),
    Column("scores_json", Text),  # null until scored
    Column("comment", Text),
    Column("status", String(20), nullable=False),
    *_times(),
    UniqueConstraint("application_id", "reviewer_id"),
)

agreements = Table(
    "agreements",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("application_id", Integer, ForeignKey("applications.id"), nullable=False, unique=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("signed_by", Integer, ForeignKey(P), nullable=False),
    Column("jurisdiction", String(32), nullable=False),
    Column("scope_json", Text, nullable=False),
    Column("valid_from", String(40), nullable=False),
    Column("valid_until", String(40), nullable=False),
    Column("rights_duties", Text, nullable=False),
    Column("security_requirements", Text, nullable=False),
    Column("exit_conditions", Text, nullable=False),
    Column("breach_liability", Text, nullable=False),
    Column("disposal", String(20), nullable=False),
    Column("review_required", Boolean, nullable=False, default=False),
    Column("status", String(20), nullable=False),
    Column("rectify_deadline", String(40)),
    *_times(),
)

data_requests = Table(
    "data_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("columns_json", Text),
    Column("purpose", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("decided_by", Integer, ForeignKey(P)),
    Column("reason", Text),
    Column("grant_id", Integer, ForeignKey("grants.id")),
    *_times(),
)

quality_tickets = Table(
    "quality_tickets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("reporter_id", Integer, ForeignKey(P), nullable=False),
    Column("text", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("answer", Text),
    Column("answered_by", Integer, ForeignKey(P)),
    Column("fixed_version", Integer),
    *_times(),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("authority_id", Integer, ForeignKey(P), nullable=False),
    Column("status", String(20), nullable=False),
    Column("figures_json", Text, nullable=False),
    Column("notes", Text, nullable=False),
    Column("deadline", String(40)),
    *_times(),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("reported_by", Integer, ForeignKey(P), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("description", Text, nullable=False),
    Column("suspended_json", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("recipient_id", Integer, ForeignKey(P), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body_json", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

inspections = Table(
    "inspections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("authority_id", Integer, ForeignKey(P), nullable=False),
    Column("findings_json", Text, nullable=False),
    Column("tasks_json", Text, nullable=False),
    Column("deadline", String(40)),
    Column("created_at", String(40), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("product_id", String(64), ForeignKey("products.id"), nullable=False),
    Column("consumer_id", Integer, ForeignKey(P), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

checker_appointments = Table(
    "checker_appointments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id")),
    Column("job_id", Integer, ForeignKey("jobs.id")),
    Column("checker_id", Integer, ForeignKey(P), nullable=False),
    Column("appointed_by", Integer, ForeignKey(P), nullable=False),
    Column("created_at", String(40), nullable=False),
)

output_reviews = Table(
    "output_reviews",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False, unique=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("agreement_id", Integer, ForeignKey("agreements.id")),
    Column("status", String(20), nullable=False),
    Column("product_id", String(64)),
    *_times(),
)

output_votes = Table(
    "output_votes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("review_id", Integer, ForeignKey("output_reviews.id"), nullable=False),
    Column("checker_id", Integer, ForeignKey(P), nullable=False),
    Column("vote", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("review_id", "checker_id"),
)

product_dispositions = Table(
    "product_dispositions",
    metadata,
    Column("product_id", String(64), ForeignKey("products.id"), primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("action", String(20), nullable=False),
    Column("custodian_id", Integer, ForeignKey(P)),
    Column("created_at", String(40), nullable=False),
)

provider_holds = Table(
    "provider_holds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("provider_id", Integer, ForeignKey(P), nullable=False),
    Column("grants_json", Text, nullable=False),  # the grants the hold stopped
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False),
    *_times(),
)

countersignatures = Table(  # Art. 4, 13: a provider signs the agreement for its dataset
    "countersignatures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("provider_id", Integer, ForeignKey(P), nullable=False),
    Column("terms", Text, nullable=False),  # the provider's own conditions, or how it signed
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("agreement_id", "dataset_id", name="one_countersignature_per_dataset"),
)

deliveries = Table(  # Art. 15: an operator delivers a product to a named consumer
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("product_id", String(64), ForeignKey("products.id"), nullable=False),
    Column("consumer_id", Integer, ForeignKey(P), nullable=False),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("product_id", "consumer_id"),
)

feedback_points = Table(  # Art. 16: the three points of a consumer's feedback
    "feedback_points",
    metadata,
    Column("feedback_id", Integer, ForeignKey("feedback.id"), primary_key=True),
    Column("quality", Integer, nullable=False),
    Column("use_score", Integer, nullable=False),
    Column("effect", Integer, nullable=False),
)

security_records = Table(  # Art. 20 staff training, Art. 21 emergency drills
    "security_records",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("agreement_id", Integer, ForeignKey("agreements.id")),
    Column("kind", String(20), nullable=False),
    Column("held_on", String(40), nullable=False),
    Column("topic", Text, nullable=False),
    Column("attendees", Integer, nullable=False),
    Column("names", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

inspection_progress = Table(  # Art. 22: an inspection's state after it was recorded (open)
    "inspection_progress",
    metadata,
    Column("inspection_id", Integer, ForeignKey("inspections.id"), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("notes_json", Text, nullable=False),  # [{by, to, notes, at}]
    Column("updated_at", String(40), nullable=False),
)

report_schedules = Table(  # Art. 16: how often the operator reports its use, set at signing
    "report_schedules",
    metadata,
    Column("agreement_id", Integer, ForeignKey("agreements.id"), primary_key=True),
    Column("every", String(20), nullable=False),  # month | quarter
    Column("created_at", String(40), nullable=False),
)

report_reminders = Table(  # one reminder per agreement and period a report was due for
    "report_reminders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("period", String(20), nullable=False),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("agreement_id", "period"),
)

verification_feedback = Table(  # Art. 16: a consumer's feedback on a verification product it called
    "verification_feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("product", String(64), nullable=False),  # the verification product's name
    Column("consumer_id", Integer, ForeignKey(P), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("quality", Integer, nullable=False),
    Column("use_score", Integer, nullable=False),
    Column("effect", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

incident_products = Table(  # Art. 21: the product a consumer's incident report is about
    "incident_products",
    metadata,
    Column("incident_id", Integer, ForeignKey("incidents.id"), primary_key=True),
    Column("product", String(64), nullable=False),  # a product id or a verification product
)

consumer_plans = Table(  # Art. 21: a consumer's incident-response plan; the newest is in force
    "consumer_plans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("consumer_id", Integer, ForeignKey(P), nullable=False),
    Column("plan", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

duty_schedules = Table(  # Art. 20, 21, 23: how often trainings, drills, evaluations fall due
    "duty_schedules",
    metadata,
    Column("agreement_id", Integer, ForeignKey("agreements.id"), primary_key=True),
    Column("duty", String(20), primary_key=True),  # training | drill | evaluation
    Column("every", String(20), nullable=False),  # month | quarter | year
    Column("since", String(40), nullable=False),  # periods count from the one holding it
    Column("set_by", Integer, ForeignKey(P), nullable=False),
    *_times(),
)

duty_reminders = Table(  # one reminder per agreement, duty and period found unfiled
    "duty_reminders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("duty", String(20), nullable=False),
    Column("period", String(20), nullable=False),
    Column("recipient_id", Integer, ForeignKey(P), nullable=False),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("agreement_id", "duty", "period"),
)

evaluation_materials = Table(  # Art. 23: what an operator submits for its evaluation
    "evaluation_materials",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, ForeignKey("agreements.id"), nullable=False),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("title", String(200), nullable=False),
    Column("filename", String(100), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("path", String(200), nullable=False),  # under the home: materials/<sha256>
    Column("created_at", String(40), nullable=False),
)

evaluation_basis = Table(  # Art. 23: the score an evaluation gave and the materials it read
    "evaluation_basis",
    metadata,
    Column("evaluation_id", Integer, ForeignKey("evaluations.id"), primary_key=True),
    Column("score", Integer),  # 0 to 100, or null: the authority gave none
    Column("materials_json", Text, nullable=False),  # [material id, ...]
)
