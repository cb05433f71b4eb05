{
    "name": "Behavioral Email",
    "summary": "Abandoned cart, post-purchase and welcome email sequences "
               "driven by what customers do in the shop",
    "version": "18.0.1.0.0",
    "category": "Marketing/Email Marketing",
    "license": "LGPL-3",
    "author": "behavioral_email",
    "website": "https://github.com/behavioral-email/behavioral_email",
    "depends": ["website_sale", "mass_mailing"],
    "data": [
        "security/res_groups.xml",
        "security/ir.model.access.csv",
        "security/ir_rules.xml",
        "data/ir_config_parameter_data.xml",
        "data/ir_cron_data.xml",
        "data/behavioral_sequence_data.xml",
        "views/behavioral_trigger_views.xml",
        "views/behavioral_sequence_views.xml",
        "views/behavioral_sequence_step_views.xml",
        "views/behavioral_enrollment_views.xml",
        "views/behavioral_trace_views.xml",
        "views/res_partner_views.xml",
        "views/sale_order_views.xml",
        "views/mailing_mailing_views.xml",
        "views/res_config_settings_views.xml",
        "views/behavioral_menus.xml",
    ],
    "demo": [
        "demo/behavioral_demo.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "behavioral_email/static/tests/tours/**/*",
        ],
    },
    "post_init_hook": "_post_init_hook",
    "application": True,
}
