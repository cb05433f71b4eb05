{
    "name": "Behavioral Email - Deliveries",
    "summary": "Email sequences started by a delivered order (review request after delivery)",
    "version": "18.0.1.0.0",
    "category": "Marketing/Email Marketing",
    "license": "LGPL-3",
    "author": "behavioral_email",
    "website": "https://github.com/behavioral-email/behavioral_email",
    "depends": ["behavioral_email", "sale_stock"],
    "data": [
        "views/behavioral_email_block_templates.xml",
        "views/behavioral_email_snippets.xml",
        "data/behavioral_sequence_order_delivered_data.xml",
    ],
    "auto_install": True,
}
