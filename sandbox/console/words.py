"""The words of the console's later screens (issue 21's remaining items), kept apart from
:mod:`.i18n` so that neither catalogue grows past the module size the house allows;
:mod:`.i18n` merges them into its two catalogues, keyed alike."""

from __future__ import annotations

ZH_MORE: dict[str, str] = {
    "nav.applications": "运营申请",
    "apps.title": "运营申请",
    "apps.one": "申请 {id}",
    "apps.notice": "公告",
    "apps.job_kinds": "计算类型",
    "apps.security_measures": "安全措施",
    "apps.security_officer": "数据安全负责人",
    "apps.incident_plan": "应急预案",
    "apps.pass_rule": "通过规则",
    "apps.my_review": "我的评分",
    "apps.help": "依据第十二条（Art. 12）：从能力、场景、安全三方面各打 0–100 分；与申请单位同一机构的评审员不得评分；评分提交后不可修改，各评审员的分数互不公开，申请单位只收到结果。",
    "apps.capability": "能力",
    "apps.scenario": "场景",
    "apps.security": "安全",
    "apps.comment": "意见",
    "apps.submit": "提交评分",
    "apps.scored": "已评分",
    "apps.to_score": "待评分",
    "apps.scores": "评审评分",
    "nav.notices": "公告",
    "notices.title": "征集公告",
    "notices.publish": "发布公告",
    "notices.help": "依据第十条、第十一条（Art. 10, 11）：公告写明领域、场景、数据范围、条件和申请截止日期（ISO 日期，北京时间当日结束截止）；区县主管部门只在本辖区发布。评审通过规则取平台默认值，其他规则请用命令行或 API。",
    "notices.f_title": "标题",
    "notices.domain": "领域",
    "notices.datasets": "数据范围",
    "notices.conditions": "申请条件",
    "notices.deadline": "申请截止",
    "notices.jurisdiction": "辖区（留空为全市，或区县代码）",
    "notices.list": "公告（{n} 条）",
    "notices.open": "征集中",
    "notices.closed": "已截止",
    "eval.title": "评估（{n} 次）",
    "eval.record": "记录评估",
    "eval.help": "依据第二十三条、第二十四条（Art. 23, 24）：不合格的评估须给出整改期限，协议随即暂停，运营单位收到通知；整改后恢复。",
    "eval.result": "结论",
    "eval.notes": "评估意见",
    "eval.deadline": "整改期限（不合格时必填，ISO 日期）",
    "eval.submit": "记录评估",
    "evalstate.passed": "合格",
    "evalstate.failed": "不合格",
    "evalstate.rectified": "已整改",
    "evalstate.terminated": "已终止",
    "classify.save_button": "保存为新版本",
    "classify.save_from": "保存时，平台从该数据集登记的数据源（{source}）重新读取数据，按此分类登记为新版本，与 sandbox dataset refresh 读取的是同一数据源；若数据源在 v{version} 之后有变动，新版本包含变动后的数据。",
    "classify.no_source": "该数据集是上传登记的，平台不保留可再次读取的数据源，因此这里不能保存：请用 sandbox dataset register {name} 数据文件 --classification 分类文件，或 API 的 POST /v1/datasets/upload，连同修改后的分类重新登记。",
    "classify.unchanged": "分类与数据都与 v{version} 相同，没有登记新版本。",
    "datasets.versions": "版本",
    "datasets.entity_key": "主体键",
}

EN_MORE: dict[str, str] = {
    "nav.applications": "Applications",
    "apps.title": "Applications",
    "apps.one": "Application {id}",
    "apps.notice": "notice",
    "apps.job_kinds": "job kinds",
    "apps.security_measures": "security measures",
    "apps.security_officer": "data-security officer",
    "apps.incident_plan": "incident-response plan",
    "apps.pass_rule": "pass rule",
    "apps.my_review": "My scores",
    "apps.help": "Art. 12: score capability, scenario and security, each 0 to 100; a reviewer "
    "of the applicant's organisation may not score; a score is final, reviewers do not see "
    "each other's, and the applicant learns only the result.",
    "apps.capability": "capability",
    "apps.scenario": "scenario",
    "apps.security": "security",
    "apps.comment": "comment",
    "apps.submit": "Submit the scores",
    "apps.scored": "scored",
    "apps.to_score": "to score",
    "apps.scores": "Reviewers' scores",
    "nav.notices": "Notices",
    "notices.title": "Notices",
    "notices.publish": "Publish a notice",
    "notices.help": "Art. 10, 11: a notice names its domain, scenario, datasets in scope, "
    "conditions and the deadline for applications (an ISO date; it closes at the end of that "
    "day in Beijing); a county authority publishes within its county. The review's pass rule "
    "is the platform's default; set another from the CLI or the API.",
    "notices.f_title": "title",
    "notices.domain": "domain",
    "notices.datasets": "datasets in scope",
    "notices.conditions": "conditions",
    "notices.deadline": "applications close",
    "notices.jurisdiction": "jurisdiction (empty: the city, or a county code)",
    "notices.list": "Notices ({n})",
    "notices.open": "open",
    "notices.closed": "closed",
    "eval.title": "Evaluations ({n})",
    "eval.record": "Record an evaluation",
    "eval.help": "Art. 23, 24: a failed evaluation sets a rectification deadline; the "
    "agreement is suspended at once and the operator is told; a rectification restores it.",
    "eval.result": "result",
    "eval.notes": "notes",
    "eval.deadline": "rectify by (required on fail; an ISO date)",
    "eval.submit": "Record the evaluation",
    "evalstate.passed": "passed",
    "evalstate.failed": "failed",
    "evalstate.rectified": "rectified",
    "evalstate.terminated": "terminated",
    "classify.save_button": "Save as a new version",
    "classify.save_from": "Saving reads the data again from the source this dataset was "
    "registered from ({source}), the one sandbox dataset refresh reads, and registers it with "
    "this classification as a new version; if the source changed since v{version}, the new "
    "version holds the changed data.",
    "classify.no_source": "This dataset was registered from an upload: the platform keeps no "
    "source it can read again, so it cannot be saved here. Register it again with the corrected "
    "classification: sandbox dataset register {name} DATA_FILE --classification FILE, or the "
    "API's POST /v1/datasets/upload.",
    "classify.unchanged": "The classification and the data are those of v{version}: no new "
    "version was registered.",
    "datasets.versions": "Versions",
    "datasets.entity_key": "entity key",
}
