from django.urls import path

from . import (
    queue_views,
    views,
    views_account,
    views_agents,
    views_flagged,
    views_levels,
    views_policies,
)

app_name = "reviews"

urlpatterns = [
    path("", queue_views.queue_page, name="queue"),
    path("queue/rows/<uuid:escalation_id>", queue_views.queue_row, name="queue_row"),
    path("escalations/<uuid:escalation_id>", views.escalation_detail, name="detail"),
    path("escalations/<uuid:escalation_id>/live", views.escalation_live, name="live"),
    # n / p on an escalation page: its neighbours in the queue's order and filters
    path("escalations/<uuid:escalation_id>/next", queue_views.queue_step, {"direction": "next"}, name="next"),
    path("escalations/<uuid:escalation_id>/previous", queue_views.queue_step, {"direction": "previous"}, name="previous"),
    path("escalations/<uuid:escalation_id>/decide", views.decide, name="decide"),
    path("escalations/<uuid:escalation_id>/claim", views.claim, name="claim"),
    path("escalations/<uuid:escalation_id>/release", views.release, name="release"),
    path("escalations/<uuid:escalation_id>/redeliver", views.redeliver, name="redeliver"),
    path("escalations/<uuid:escalation_id>/claim/renew", views.claim_renew, name="claim_renew"),
    path("escalations/<uuid:escalation_id>/reassign", views.reassign, name="reassign"),
    path("escalations/<uuid:escalation_id>/comment", views.comment, name="comment"),
    path("escalations/<uuid:escalation_id>/ask", views.ask, name="ask"),
    path("escalations/<uuid:escalation_id>/flag-review", views.flag_review, name="flag_review"),
    path("flagged/", views_flagged.flagged_backlog, name="flagged"),
    path("flagged/fine", views_flagged.flagged_fine, name="flagged_fine"),
    path("flagged/<uuid:escalation_id>/fine", views_flagged.flagged_fine_one, name="flagged_fine_one"),
    path("runs/mine", views.my_runs, name="my_runs"),
    path("runs/<int:run_id>/close", views.run_close, name="run_close"),
    # everyone's own page: reviewer tokens
    path("account/", views_account.account, name="account"),
    path("account/tokens", views_account.token_create, name="token_create"),
    path("account/tokens/<int:token_id>/revoke", views_account.token_revoke, name="token_revoke"),
    # the managers' agents page
    path("agents/", views_agents.agents, name="agents"),
    path("agents/new", views_agents.agent_register, name="agent_new"),
    path("agents/<int:agent_id>", views_agents.agent_detail, name="agent"),
    path("agents/<int:agent_id>/settings", views_agents.agent_settings, name="agent_settings"),
    path("agents/<int:agent_id>/tokens/rotate", views_agents.agent_token_rotate, name="agent_token_rotate"),
    path(
        "agents/<int:agent_id>/tokens/<int:token_id>/revoke",
        views_agents.agent_token_revoke,
        name="agent_token_revoke",
    ),
    path("agents/<int:agent_id>/secret/roll", views_agents.agent_secret_roll, name="agent_secret_roll"),
    path(
        "agents/<int:agent_id>/deliveries/<uuid:delivery_id>/redeliver",
        views_agents.agent_redeliver,
        name="agent_redeliver",
    ),
    # the managers' policy pages
    path("policies/", views_policies.policy_list, name="policies"),
    path("policies/new", views_policies.policy_create, name="policy_new"),
    path("policies/<slug:domain>", views_policies.policy_detail, name="policy"),
    path("policies/<slug:domain>/suggestions", views_policies.policy_suggestions, name="policy_suggestions"),
    path("policies/<slug:domain>/backtest", views_policies.policy_backtest, name="policy_backtest"),
    path("policies/<slug:domain>/levels", views_levels.policy_levels, name="policy_levels"),
]
