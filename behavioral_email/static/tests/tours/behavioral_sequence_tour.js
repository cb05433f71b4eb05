import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

/**
 * A marketer builds a sequence in the form: names it, picks the trigger,
 * adds a step inline with its delay, is told why it cannot start yet,
 * writes the email in the step's form, and starts it.
 */
registry.category("web_tour.tours").add("behavioral_email_sequence_tour", {
    url: "/odoo/action-behavioral_email.behavioral_sequence_action",
    steps: () => [
        {
            content: "Create a sequence",
            trigger: ".o_list_button_add",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_field_widget[name=name] input",
            run: "edit Tour welcome",
        },
        {
            content: "Start it on new contacts",
            trigger: ".o_field_widget[name=trigger_type] select",
            run: 'select "partner_created"',
        },
        {
            content: "Add a step",
            trigger: ".o_field_widget[name=step_ids] .o_field_x2many_list_row_add a",
            run: "click",
        },
        {
            content: "Send it two hours after the trigger",
            trigger: ".o_field_widget[name=step_ids] .o_data_row .o_field_widget[name=delay_value] input",
            run: "edit 2",
        },
        {
            trigger: ".o_field_widget[name=step_ids] .o_data_row .o_field_widget[name=delay_unit] select",
            run: 'select "hours"',
        },
        {
            content: "Give it a subject",
            trigger: ".o_field_widget[name=step_ids] .o_data_row .o_field_widget[name=subject] input",
            run: "edit Nice to meet you",
        },
        ...stepUtils.saveForm(),
        {
            content: "Try to start it",
            trigger: ".o_form_statusbar button[name=action_start]:not(:disabled)",
            run: "click",
        },
        {
            content: "The step has no content yet: a clear message says so",
            trigger: ".modal:contains(cannot start):contains(has no content)",
        },
        {
            trigger: ".modal .modal-footer .btn-primary",
            run: "click",
        },
        {
            trigger: "body:not(:has(.modal))",
        },
        {
            content: "Open the step to write the email",
            trigger: ".o_field_widget[name=step_ids] .o_data_row:contains(Nice to meet you) td.o_list_record_open_form_view button",
            run: "click",
        },
        {
            content: "Start from the plain text layout of the email editor",
            trigger: '.o_field_widget[name="body_arch"] :iframe #basic',
            run: "click",
        },
        {
            content: "Write the email",
            trigger: '.o_field_widget[name="body_arch"] :iframe .o_layout.o_basic_theme p:first',
            run: "editor Hello from the shop, welcome aboard!",
        },
        ...stepUtils.saveForm(),
        {
            content: "Back to the sequence",
            trigger: ".o_breadcrumb a:contains(Tour welcome)",
            run: "click",
        },
        {
            content: "Start the sequence",
            trigger: ".o_form_statusbar button[name=action_start]:not(:disabled)",
            run: "click",
        },
        {
            content: "It is running",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Running)",
        },
    ],
});
